"""The page's scripting API (the docs' gradio_client script) and its safety rules: paths fenced
into the work and output folders, uploads capped, no public listening without a password,
errors as one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tiny_runs import run_cli

from tests.media import make_clip
from tests.web.conftest import free_port
from vidrefine.errors import ExitCode
from vidrefine.io.probe import probe

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "examples" / "web_client.py"


def client(server):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(server.url, verbose=False)


def app_error(call) -> str:
    """The message of the error a gradio_client call raises."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as raised:
        call()
    return str(raised.value)


def http_status(url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_docs_client_script_uploads_refines_and_downloads_when_run_against_the_server(
    server, tmp_path
):
    clip = make_clip(tmp_path / "short.mp4", frames=9, size_hw=(48, 64), audio=True)
    done = subprocess.run(
        [sys.executable, str(CLIENT), server.url, str(clip.path), "a short test clip"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = probe(done.stdout.strip().splitlines()[-1])
    assert out.frame_count == 9 and out.display_hw == (64, 86) and len(out.audio) == 1

    jobs = json.loads((server.work / "jobs.json").read_text())
    job = next(j["id"] for j in jobs if Path(j["input"]).name == "short.mp4")
    summary, pictures = client(server).predict(job, api_name="/compare")
    assert "9 frames, 64x48 -> 86x64" in summary and "| PSNR |" in summary
    assert [Path(p["image"]).name for p in pictures][:1] == ["metrics.png"]
    assert (server.work / "jobs" / job / "report" / "index.html").is_file()


def test_client_script_prints_usage_and_exits_2_when_run_without_arguments():
    done = subprocess.run([sys.executable, str(CLIENT)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "usage: python examples/web_client.py URL CLIP" in done.stderr


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "{work}/clips/../../../../etc/passwd", "{work}/../serve.log"],
    ids=["absolute", "dot-dot", "beside-the-work-folder"],
)
def test_request_for_a_path_outside_the_work_folder_fails_when_a_clip_is_chosen(server, path):
    message = app_error(
        lambda: client(server).predict(path.format(work=server.work), api_name="/choose")
    )
    assert "outside the work folder and the output folder" in message
    assert "Traceback" not in message


def test_link_out_of_the_work_folder_is_refused_when_a_request_names_it(server):
    link = server.work / "clips" / "escape.mp4"
    link.unlink(missing_ok=True)
    link.symlink_to(server.log)
    try:
        message = app_error(lambda: client(server).predict(str(link), api_name="/choose"))
    finally:
        link.unlink()
    assert "outside the work folder" in message


def test_file_route_serves_nothing_outside_the_allowed_folders_when_asked_directly(server):
    for path in ("/etc/passwd", str(server.work / "jobs.json"), str(ROOT / "README.md")):
        status, _ = http_status(f"{server.url}gradio_api/file={path}")
        assert status in (403, 404), path


def test_oversized_upload_is_refused_with_a_clear_message_when_over_the_cap(server):
    boundary = "vidrefine-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    body = head + bytes(2_000_000) + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, text = http_status(f"{server.url}gradio_api/upload", body, headers)
    assert status == 413
    assert "maximum allowed size of 1000000 bytes" in text
    assert [p for p in server.work.rglob("big*")] == []  # nothing of it kept


def uploaded(server, path: Path) -> str:
    """Upload a clip through the API; its path in the work folder."""
    from gradio_client import handle_file

    return client(server).predict(handle_file(str(path)), api_name="/upload")[0]


def test_bad_setting_is_one_line_naming_the_key_when_a_preview_is_asked(server, tmp_path):
    clip = uploaded(server, make_clip(tmp_path / "c.mp4", frames=5).path)
    api = client(server)
    message = app_error(
        lambda: api.predict(clip, "a ball", 0, "default", "13x7", api_name="/preview")
    )
    assert "size = '13x7'" in message and "\n" not in message and "Traceback" not in message


def test_missing_caption_is_the_clis_one_line_message_when_a_refine_is_asked(server, tmp_path):
    clip = uploaded(server, make_clip(tmp_path / "c.mp4", frames=5).path)
    message = app_error(lambda: client(server).predict(clip, " ", api_name="/refine"))
    assert message.startswith("no caption")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.7", "my-host"])
def test_serve_refuses_to_start_with_one_line_when_listening_publicly_without_auth(host):
    code, text = run_cli(["serve", "--host", host])
    assert code == ExitCode.BAD_INPUT
    assert set(text.strip().splitlines()) == {
        f"vidrefine: error: refusing to listen on {host} without a password: anyone who can "
        "reach this machine could run jobs and download outputs; pass --auth USER:PASS or "
        "--auth-file FILE (or keep the default --host 127.0.0.1)"
    }


def test_serve_rejects_a_malformed_auth_when_it_has_no_password(tmp_path):
    code, text = run_cli(["serve", "--host", "0.0.0.0", "--auth", "admin"])
    assert code == ExitCode.BAD_INPUT
    assert "--auth: expected USER:PASS" in text
    empty = tmp_path / "auth"
    empty.write_text("\n")
    code, text = run_cli(["serve", "--host", "0.0.0.0", "--auth-file", str(empty)])
    assert code == ExitCode.BAD_INPUT and "is empty" in text


def test_serve_names_the_missing_weights_before_starting_when_offline(tmp_path):
    args = ["--weights", str(tmp_path), "--offline", "--port", str(free_port())]
    code, text = run_cli(["serve", *args, "--work", str(tmp_path / "work")])
    assert code == ExitCode.MISSING_WEIGHTS
    assert "stage2.pt" in text and "Traceback" not in text
    assert list(tmp_path.iterdir()) == []  # the work folder made for the start is gone


def test_serve_refuses_a_bad_upload_cap_before_looking_for_weights(tmp_path):
    code, text = run_cli(["serve", "--max-upload-gb", "0", "--weights", str(tmp_path), "--offline"])
    assert code == ExitCode.BAD_INPUT
    assert "--max-upload-gb must be positive" in text and "stage2.pt" not in text


def test_preview_through_the_client_accepts_any_time_inside_the_clip_when_past_one_second(
    server, tmp_path
):
    clip = uploaded(server, make_clip(tmp_path / "long.mp4", frames=80, fps=25).path)  # 3.2 s
    api = client(server)
    inputs = api.view_api(return_format="dict", print_info=False)["named_endpoints"]["/preview"]
    at = next(p for p in inputs["parameters"] if p["label"] == "Preview at (s)")
    assert "maximum" not in json.dumps(at).lower() and "and 1" not in json.dumps(at)
    source, refined = api.predict(clip, "a ball", 2.5, api_name="/preview")
    assert probe(source).frame_count == probe(refined).frame_count == 13  # one tiny window
    assert probe(refined).display_hw == (64, 86)


@pytest.mark.parametrize(
    ("endpoint", "argument"),
    [
        ("/choose", "{work}/clips/a\x00b.mp4"),
        ("/shots", "{work}/clips/\x00"),
        ("/preview", "{work}/previews/\x00.mp4"),
    ],
)
def test_path_with_a_nul_byte_is_a_clear_refusal_not_a_bug_when_a_request_names_it(
    server, endpoint, argument
):
    path = argument.format(work=server.work)
    args = (path, "a ball", 0) if endpoint == "/preview" else (path,)
    message = app_error(lambda: client(server).predict(*args, api_name=endpoint))
    assert "NUL" in message and "bug" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("junk.mp4", bytes(range(256)) * 40), ("notes.txt", b"not a video\n")],
    ids=["not-a-video", "not-a-video-name"],
)
def test_rejected_upload_leaves_nothing_in_the_work_folder_when_it_is_not_a_video(
    server, tmp_path, name, content
):
    bad = tmp_path / name
    bad.write_bytes(content)
    message = app_error(lambda: uploaded(server, bad))
    assert name in message and "bug" not in message
    assert [p for p in server.work.rglob("*") if p.name.startswith(bad.stem)] == []
    message = app_error(
        lambda: client(server).predict(str(server.work / "clips" / name), api_name="/choose")
    )
    assert "no such clip" in message or "not a video" in message
