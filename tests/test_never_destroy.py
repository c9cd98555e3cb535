"""Issue 20, items 1, 2 and 4: vidrefine replaces only what it can show it made, through the
commands as users type them: report folders (`compare`/`upscale --report`), captions files
(`caption -o`), outputs two clips would share, and places that cannot be written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.errors import ExitCode
from vidrefine.io.folders import MARKER

REPO = Path(__file__).resolve().parents[1]
UNWRITABLE = Path("/proc")  # a folder even root cannot write in


def vidrefine(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("vidrefine: error:")]
    assert len(lines) == 1, text
    assert "Traceback" not in text and "bug" not in text, text
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return make_clip(folder / "clip.mp4", frames=3, size_hw=(32, 48)).path


@pytest.fixture()
def users_folder(tmp_path, clip) -> Path:
    """The issue's reproduction: a folder holding the user's clip and notes."""
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(clip, folder / "in.mp4")
    (folder / "notes.txt").write_text("x\n")
    return folder


# ---- item 1: --report DIR --overwrite -------------------------------------------------------


def test_compare_report_never_deletes_the_folder_holding_its_input_when_overwrite_is_given(
    users_folder,
):
    before = tree(users_folder)
    clip = users_folder / "in.mp4"
    code, text = vidrefine("compare", clip, clip, "--report", users_folder, "--overwrite")
    assert code == ExitCode.BAD_INPUT
    assert "in.mp4" in error_line(text) and "folder of its own" in error_line(text)
    assert tree(users_folder) == before


def test_compare_report_never_replaces_a_folder_of_the_users_files_whatever_the_flags(
    users_folder, clip, tmp_path
):
    (users_folder / "in.mp4").unlink()
    before = tree(users_folder)
    for flags in ([], ["--overwrite"]):
        code, text = vidrefine("compare", clip, clip, "--report", users_folder, *flags)
        assert code == ExitCode.OUTPUT_EXISTS
        line = error_line(text)
        assert "notes.txt" in line and "--overwrite" not in line  # never advice that destroys
        assert tree(users_folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_compare_report_refuses_the_current_folder_and_leaves_nothing_when_given_dot(
    users_folder, monkeypatch
):
    monkeypatch.chdir(users_folder)
    before = tree(users_folder.parent)
    code, text = vidrefine("compare", "in.mp4", "in.mp4", "--report", ".", "--overwrite")
    assert code == ExitCode.BAD_INPUT and "current folder" in error_line(text)
    assert tree(users_folder.parent) == before
    assert [p.name for p in users_folder.parent.iterdir()] == ["d"]  # no ..vidrefine-tmp-old-*


def test_compare_report_replaces_only_its_own_report_when_overwrite_is_given(clip, tmp_path):
    report = tmp_path / "report"
    assert vidrefine("compare", clip, clip, "--report", report)[0] == 0
    listed = set(json.loads((report / MARKER).read_text())["files"])
    assert listed == {p.name for p in report.iterdir()} - {MARKER} and "index.html" in listed
    code, text = vidrefine("compare", clip, clip, "--report", report)
    assert code == ExitCode.OUTPUT_EXISTS and "--overwrite" in error_line(text)
    (report / "index.html").write_text("old page")
    assert vidrefine("compare", clip, clip, "--report", report, "--overwrite")[0] == 0
    assert "old page" not in (report / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    (report / "my notes.txt").write_text("mine")  # the user keeps something in it
    code, text = vidrefine("compare", clip, clip, "--report", report, "--overwrite")
    assert code == ExitCode.OUTPUT_EXISTS and "my notes.txt" in error_line(text)
    assert (report / "my notes.txt").read_text() == "mine" and (report / "index.html").exists()


def test_compare_report_writes_into_an_empty_folder_the_user_made(clip, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    assert vidrefine("compare", clip, clip, "--report", report)[0] == 0
    assert (report / "index.html").is_file()


def test_compare_report_is_refused_before_measuring_when_its_parent_cannot_be_written(
    clip, tmp_path
):
    unread = tmp_path / "later.mp4"  # not opened when the report cannot be written anyway
    unread.write_bytes(b"not a video")
    code, text = vidrefine("compare", clip, unread, "--report", UNWRITABLE / "vidrefine-report")
    assert code == ExitCode.BAD_INPUT and "cannot write" in error_line(text)


def test_upscale_report_never_deletes_the_output_it_writes_when_overwrite_is_given(clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "older.mp4").write_bytes(b"precious")
    code, text = vidrefine(
        "upscale", clip, "-c", "a", "-o", out / "c.mp4", "--report", out, "--overwrite",
        "--offline", "--weights", tmp_path / "none",
    )  # fmt: skip
    assert code == ExitCode.BAD_INPUT, text  # refused before weights are looked for
    assert "c.mp4" in error_line(text) and "folder of its own" in error_line(text)
    assert tree(out) == {"older.mp4": b"precious"}


# ---- item 2: caption -o over a video -------------------------------------------------------


@pytest.mark.parametrize("target", ["in.mp4", "notes.txt", "other.mp4"])
def test_caption_never_writes_srt_over_a_video_or_another_file_whatever_the_flags(
    users_folder, target
):
    shutil.copy(users_folder / "in.mp4", users_folder / "other.mp4")
    before = tree(users_folder)
    code, text = vidrefine(
        "caption", users_folder / "in.mp4", "-o", users_folder / target, "--overwrite",
        "--offline", "--weights", users_folder / "none",
    )  # fmt: skip
    assert code == ExitCode.BAD_INPUT, text  # before the captioner is looked for
    assert ".srt" in error_line(text)
    assert tree(users_folder) == before


# ---- item 4: two clips, one output ---------------------------------------------------------


def test_caption_refuses_two_clips_of_one_name_into_one_folder_before_any_work(clip, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(clip, tmp_path / name / "x.mp4")
    for flags in ([], ["--overwrite"]):
        code, text = vidrefine(
            "caption", tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4", "-o",
            tmp_path / "caps", "--offline", "--weights", tmp_path / "none", *flags,
        )  # fmt: skip
        assert code == ExitCode.BAD_INPUT, text
        assert "would both be written to" in error_line(text)
    assert not (tmp_path / "caps").exists()


# ---- outputs that cannot be written, found before the expensive work -----------------------


def test_caption_output_in_a_folder_that_cannot_be_written_is_refused_before_loading(clip):
    code, text = vidrefine(
        "caption", clip, "-o", UNWRITABLE / "caps" / "x.captions.srt", "--offline", "--weights",
        UNWRITABLE / "none",
    )  # fmt: skip
    assert code == ExitCode.BAD_INPUT and "cannot write" in error_line(text), text


def _read_only_bind_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = "d=$(mktemp -d); mount --bind -o ro $d $d && ! touch $d/x 2>/dev/null; r=$?; exit $r"
    return subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True).returncode == 0


@pytest.mark.skipif(not _read_only_bind_works(), reason="needs unshare -m and mount (root)")
def test_upscale_caption_auto_refuses_a_clip_folder_that_cannot_take_its_sidecar(clip, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(clip, clips / "c.mp4")
    args = ["upscale", str(clips / "c.mp4"), "--caption", "auto", "-o", str(tmp_path / "o.mp4")]
    args += ["--offline", "--weights", str(tmp_path / "none")]
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "-", str(clips), sys.executable, "-m", "vidrefine"]
        + args,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr  # not "missing weights" (3)
    assert "c.captions.srt" in error_line(done.stderr) and "cannot write" in done.stderr
