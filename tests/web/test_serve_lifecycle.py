"""A real `vidrefine serve` process stopped while it refines: SIGTERM stops it cleanly (exit 143,
the job resumable, no temporary file), a restart after kill -9 cleans what the killed server
left, and a second server on a work folder in use is refused before it writes anything.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.media import make_clip
from tests.web.conftest import (
    START_TIMEOUT_S,
    free_port,
    serve_command,
    serve_environment,
    start_server,
    stop_server,
)
from vidrefine.errors import ExitCode
from vidrefine.io.atomic import is_temp_name

CAPTION = "A small test pattern drifts slowly across the frame"
pytestmark = pytest.mark.slow


def client(server):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(server.url, verbose=False)


def submit(server, clip: Path) -> str:
    """Upload `clip` and queue it; the job's id."""
    from gradio_client import handle_file

    api = client(server)
    uploaded = api.predict(handle_file(str(clip)), api_name="/upload")[0]
    return api.predict(uploaded, CAPTION, api_name="/refine")


def saved_job(work: Path, job: str) -> dict:
    return next(j for j in json.loads((work / "jobs.json").read_text()) if j["id"] == job)


def temps(folder: Path) -> list[str]:
    """Our temporary files in `folder` (an output being written)."""
    return sorted(p.name for p in folder.iterdir() if is_temp_name(p.name))


def wait_until_writing(
    process: subprocess.Popen, work: Path, out: Path, job: str, fresh: int = 0
) -> dict:
    """Wait until the job runs, writes its output and has made `fresh` windows in this run."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        record = saved_job(work, job)
        made = record["windows_done"] - record["reused_windows"]
        if record["state"] == "running" and made >= fresh and temps(out):
            return record
        time.sleep(0.05)
    pytest.fail(f"job {job} did not start writing: {saved_job(work, job)}")


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("vidrefine: error:")]


def test_sigterm_stops_a_running_job_resumably_and_a_restart_after_kill_9_cleans_up(
    tmp_path, stage2_weights
):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir(mode=0o755)
    work.chmod(0o755)  # an existing folder other users may read: serve never changes its mode
    clip = make_clip(tmp_path / "clip.mp4", frames=61, size_hw=(48, 64)).path  # 7 windows

    process, server = start_server(tmp_path, stage2_weights)
    try:
        job = submit(server, clip)
        wait_until_writing(process, work, out, job, fresh=1)  # one window kept for the resume
        process.kill()  # kill -9: nothing of ours runs
        process.wait()
    finally:
        stop_server(process)
    left = temps(out)
    assert left and saved_job(work, job)["state"] == "running"

    process, server = start_server(tmp_path, stage2_weights, "serve-2.log")
    try:
        assert temps(out) == [], f"{left} survived the restart"
        record = saved_job(work, job)
        assert record["state"] == "interrupted" and "resume" in record["message"]
        assert client(server).predict(job, api_name="/resume").startswith(f"job {job}: queued")
        kept = wait_until_writing(process, work, out, job)["windows_done"]
    finally:
        code = stop_server(process, signal.SIGTERM)
    assert code == ExitCode.TERMINATED, server.log.read_text()[-2000:]
    assert "terminate called" not in server.log.read_text()
    assert [line.split(":", 3)[2].strip() for line in error_lines(server.log)] == [
        "terminated (SIGTERM)"
    ]
    record = saved_job(work, job)
    assert record["state"] == "interrupted" and "resume" in record["message"]
    assert record["windows_done"] >= kept and not Path(record["output"]).exists()
    assert record["reused_windows"] >= 1  # the window the killed server finished
    assert temps(out) == [] and temps(work) == []
    assert stat.S_IMODE(work.stat().st_mode) == 0o755
    assert "readable by other users" in server.log.read_text()


def test_second_server_on_a_work_folder_in_use_is_refused_in_one_line(
    server, stage2_weights, tmp_path
):
    jobs = server.work / "jobs.json"
    jobs_before = jobs.read_bytes() if jobs.exists() else None
    names_before = sorted(p.name for p in server.work.iterdir())
    command = serve_command(tmp_path, stage2_weights, free_port(), work=server.work)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=serve_environment(tmp_path)
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a second vidrefine serve started on a work folder in use")
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"vidrefine: error: the work folder {server.work} is used by another vidrefine serve "
        f"(pid {server.pid} on {socket.gethostname()}); give another --work"
    ]
    assert "serving on" not in done.stdout + done.stderr
    assert (jobs.read_bytes() if jobs.exists() else None) == jobs_before
    assert sorted(p.name for p in server.work.iterdir()) == names_before
    assert not (tmp_path / "out").exists()
