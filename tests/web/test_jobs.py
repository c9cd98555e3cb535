"""The job queue on its own: order, position, cancel, failures as one line, restarts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from vidrefine.errors import BadInput, Interrupted
from vidrefine.web.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    INTERRUPTED,
    QUEUED,
    Job,
    JobProgress,
    JobQueue,
)


class GatedRunner:
    """Runs jobs only when the test opens the gate; records which jobs it ran."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.ran: list[str] = []
        self.fail = fail

    def __call__(self, job: Job, progress) -> int:
        self.ran.append(job.id)
        self.started.set()
        self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        return 0


def submit(queue: JobQueue, name: str) -> Job:
    return queue.submit(Path(f"/clips/{name}.mp4"), Path(f"/out/{name}.mp4"), "caption", {})


def test_jobs_run_one_at_a_time_in_order_and_a_queued_one_cancels_when_asked(tmp_path):
    runner = GatedRunner()
    queue = JobQueue(tmp_path / "jobs.json", runner)
    first, second, third = submit(queue, "a"), submit(queue, "b"), submit(queue, "c")
    assert runner.started.wait(30)
    assert [queue.position(j) for j in (first, second, third)] == [1, 2, 3]

    queue.cancel(second.id)
    runner.gate.set()
    assert queue.wait(third.id, timeout_s=30).state == DONE
    assert runner.ran == [first.id, third.id]
    assert queue.get(second.id).state == CANCELLED
    saved = {j["id"]: j["state"] for j in json.loads((tmp_path / "jobs.json").read_text())}
    assert saved == {first.id: DONE, second.id: CANCELLED, third.id: DONE}


def test_failed_job_keeps_the_errors_one_line_message_when_the_runner_raises(tmp_path):
    runner = GatedRunner(fail=BadInput("clip.mp4: cannot decode\nframe 3"))
    runner.gate.set()
    queue = JobQueue(tmp_path / "jobs.json", runner)
    job = queue.wait(submit(queue, "a").id, timeout_s=30)
    assert (job.state, job.message) == (FAILED, "clip.mp4: cannot decode frame 3")


def test_unexpected_error_is_one_line_without_a_stack_when_a_job_meets_a_bug(tmp_path, capsys):
    runner = GatedRunner(fail=ZeroDivisionError("division by zero"))
    runner.gate.set()
    queue = JobQueue(tmp_path / "jobs.json", runner)
    job = queue.wait(submit(queue, "a").id, timeout_s=30)
    assert job.state == FAILED
    assert job.message.startswith("unexpected ZeroDivisionError: division by zero (this is a bug")
    assert "Traceback" not in job.message and "Traceback" in capsys.readouterr().err


def test_running_job_comes_back_interrupted_and_resumable_when_the_server_restarts(tmp_path):
    state = tmp_path / "jobs.json"
    running = Job("0a1b2c3d", "/clips/a.mp4", "/out/a.mp4", "caption", {}, state="running")
    state.write_text(json.dumps([running.__dict__]))
    runner = GatedRunner()
    queue = JobQueue(state, runner)
    job = queue.get("0a1b2c3d")
    assert job.state == INTERRUPTED and "the server stopped while it ran" in job.message
    assert json.loads(state.read_text())[0]["state"] == INTERRUPTED  # the file says so too
    assert runner.ran == []

    runner.gate.set()
    queue.resume(job.id)
    assert queue.wait(job.id, timeout_s=30).state == DONE


def test_progress_counts_reused_windows_and_stops_at_the_next_step_when_cancelled():
    job = Job("0a1b2c3d", "/clips/a.mp4", "/out/a.mp4", "caption", {}, state="running")
    cancelled = threading.Event()
    progress = JobProgress(job, cancelled, lambda: None)
    with progress.task("windows", total=3) as windows:
        windows.advance()  # no steps: kept from an earlier run
        with progress.task("steps", total=2) as steps:
            steps.advance(2)
        windows.advance()
        assert job.progress_line().startswith("window 3/3, step 0/2, 1 reused, about ")
        cancelled.set()
        with (
            pytest.raises(Interrupted, match="finished windows are kept"),
            progress.task("steps", total=2) as steps,
        ):
            steps.advance()
    assert (job.windows_done, job.reused_windows) == (2, 1)


def test_resumed_job_counts_each_reused_window_when_it_was_cancelled_amid_a_window(tmp_path):
    gate, runs = threading.Event(), []

    def run(job: Job, progress: JobProgress) -> int:
        runs.append(job.id)
        with progress.task("windows", total=3) as windows:
            if len(runs) == 1:  # the first run: window 1 made, the cancel lands amid window 2
                with progress.task("steps", total=2) as steps:
                    steps.advance(2)
                windows.advance()
                with progress.task("steps", total=2) as steps:
                    steps.advance()
                    gate.wait(30)
                    steps.advance()  # sees the cancel
            windows.advance()  # the resumed run: window 1 and 2 kept, no steps
            windows.advance()
        return 2

    queue = JobQueue(tmp_path / "jobs.json", run)
    job = submit(queue, "a")
    while job.steps_done != 1:
        threading.Event().wait(0.01)
    queue.cancel(job.id)
    gate.set()
    assert queue.wait(job.id, timeout_s=30).state == CANCELLED
    queue.resume(job.id)
    assert queue.wait(job.id, timeout_s=30).state == DONE
    assert job.reused_windows == 2


def test_shutdown_stops_the_running_job_as_interrupted_and_keeps_the_queued_when_the_server_stops(
    tmp_path,
):
    def run(job: Job, progress: JobProgress) -> int:
        with progress.task("steps", total=100) as steps:
            while True:  # a long job: only a cancel ends it, at its next step
                steps.advance()
                threading.Event().wait(0.01)

    queue = JobQueue(tmp_path / "jobs.json", run)
    first, second = submit(queue, "a"), submit(queue, "b")
    while first.steps_done < 1:
        threading.Event().wait(0.01)
    assert queue.shutdown() == [first]
    assert not queue.worker.is_alive()
    saved = {j["id"]: j["state"] for j in json.loads((tmp_path / "jobs.json").read_text())}
    assert saved == {first.id: INTERRUPTED, second.id: QUEUED}
    assert "resume" in first.message
    queue.resume(first.id)  # resumable like a cancelled job
