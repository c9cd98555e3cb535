"""The page's job queue: one job at a time on the device, listed with position and progress.

The list lives in the server (and in `jobs.json` in the work folder), so it survives a page
reload and a server restart. Cancelling a running job stops it at the next step; the windows it
finished stay in the resume store, so resuming reuses them. A server that stops (SIGTERM,
Ctrl-C: `shutdown`) cancels its running job the same way and lists it as interrupted; one that
was killed finds its job "running" in the file when it starts again and lists it as interrupted
too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidrefine.errors import Interrupted, VidrefineError, first_line
from vidrefine.io.atomic import atomic_output

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
INTERRUPTED = "interrupted"  # stopped with the server; resumes like a cancelled job
ACTIVE = (QUEUED, RUNNING)
RESUMABLE = (CANCELLED, FAILED, INTERRUPTED)
KEPT = "the finished windows are kept: resume to go on from them"
CANCEL_MESSAGE = f"cancelled; {KEPT}"
STOPPED_MESSAGE = f"the server stopped while it ran; {KEPT}"


@dataclass
class Job:
    """One clip to refine and where it stands (what the page lists)."""

    id: str
    input: str
    output: str
    caption: str
    settings: dict[str, Any]
    state: str = QUEUED
    message: str = ""
    windows_done: int = 0
    windows_total: int = 0
    steps_done: int = 0
    steps_total: int = 0
    reused_windows: int = 0
    eta_s: float | None = None
    created: float = field(default_factory=time.time)
    captions: str = ""  # the captions file (one caption per shot) in the job's folder, if any

    def progress_line(self) -> str:
        """'window 3/9, step 1/2, about 12 s left' (empty before the first window)."""
        if not self.windows_total:
            return ""
        parts = [f"window {min(self.windows_done + 1, self.windows_total)}/{self.windows_total}"]
        if self.state == DONE:
            parts = [f"{self.windows_total} windows"]
        elif self.steps_total:
            parts.append(f"step {self.steps_done}/{self.steps_total}")
        if self.reused_windows:
            parts.append(f"{self.reused_windows} reused")
        if self.state == RUNNING and self.eta_s is not None:
            parts.append(f"about {self.eta_s:.0f} s left")
        return ", ".join(parts)


class JobProgress:
    """The `vidrefine.progress.Progress` a running job reports to: counts windows and steps,
    estimates the time left, and stops the job (Interrupted) once it is cancelled.
    """

    def __init__(self, job: Job, cancelled: threading.Event, changed: Callable[[], None]):
        self.job, self.cancelled, self.changed = job, cancelled, changed
        self.window_started = time.monotonic()
        self.sampled, self.sampled_s = 0, 0.0  # windows computed (not reused), and their time

    @contextlib.contextmanager
    def task(self, label: str, total: int | None = None, unit: str = "frames") -> Iterator[Any]:
        """Count windows and steps; other loops (caption encoding, loading) only check cancel."""
        self._check()
        if label == "windows":
            self.job.windows_total, self.job.windows_done = total or 0, 0
            self.window_started = time.monotonic()
        elif label == "steps":
            self.job.steps_total, self.job.steps_done = total or 0, 0
        yield _Task(self, label)

    def set_total(self, label: str, total: int | None) -> None:
        """Correct the window count (a lying header); other totals are not shown."""
        if label == "windows" and total:
            self.job.windows_total = total

    def advance(self, label: str, n: int = 1) -> None:
        """A loop moved on: count it, update the estimate, and stop if cancelled."""
        if label == "windows":
            self._window_done(n)
        elif label == "steps":
            self.job.steps_done += n
        self._check()

    def _window_done(self, n: int) -> None:
        """A window without steps was reused from the resume store; the estimate of the time
        left counts only the windows sampled in this run.
        """
        job, now = self.job, time.monotonic()
        spent, self.window_started = now - self.window_started, now
        job.windows_done += n
        if job.steps_done:
            self.sampled, self.sampled_s = self.sampled + n, self.sampled_s + spent
        else:
            job.reused_windows += n
        if self.sampled:
            job.eta_s = self.sampled_s / self.sampled * (job.windows_total - job.windows_done)
        job.steps_done = 0
        self.changed()

    def info(self, message: str) -> None:
        """Notes are not shown in the page (its job line says what they would)."""

    def warn(self, message: str) -> None:
        """Keep the latest warning as the job's message."""
        self.job.message = " ".join(message.split())

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise Interrupted(CANCEL_MESSAGE)


class _Task:
    """One loop of a `JobProgress`: `advance(n)` and `set_total(total)` go to it, labelled."""

    def __init__(self, progress: JobProgress, label: str) -> None:
        self.advance = functools.partial(progress.advance, label)
        self.set_total = functools.partial(progress.set_total, label)


Runner = Callable[[Job, JobProgress], int]  # runs a job; returns the windows reused


class JobQueue:
    """Jobs run one after another on a worker thread; the list is saved on every change."""

    def __init__(self, state_file: Path, run: Runner, *, start: bool = True) -> None:
        """Load the saved list; the worker starts now, or at `start()` when `start` is False
        (the server starts it once it holds its port).
        """
        self.state_file, self.run = state_file, run
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Condition()
        self.cancel_flags: dict[str, threading.Event] = {}
        self.stopping = False
        self._load()
        self.worker = threading.Thread(target=self._work, name="vidrefine-jobs", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start running the queued jobs, one after another."""
        self.worker.start()

    def submit(
        self,
        input: Path,
        output: Path,
        caption: str,
        settings: dict[str, Any],
        prepare: Callable[[Job], None] | None = None,
    ) -> Job:
        """Queue a job; it runs when the jobs before it are done. `prepare(job)` (e.g. saving
        its captions file) runs before the job is listed, so before it can start.
        """
        job = Job(secrets.token_hex(4), str(input), str(output), caption, dict(settings))
        with self.lock:
            if prepare is not None:
                prepare(job)
            self.jobs[job.id] = job
            self._changed()
        return job

    def get(self, job_id: str) -> Job:
        """The job `job_id`; BadInput-like VidrefineError when there is none."""
        job = self.jobs.get(str(job_id).strip())
        if job is None:
            raise VidrefineError(f"no job {job_id!r}; the list shows the jobs there are")
        return job

    def cancel(self, job_id: str) -> Job:
        """Stop a running job at its next step, or drop a queued one from the line."""
        with self.lock:
            job = self.get(job_id)
            if job.state == QUEUED:
                job.state, job.message = CANCELLED, "cancelled before it started"
            elif job.state == RUNNING:
                self.cancel_flags[job.id].set()
                job.message = "cancelling at the next step..."
            self._changed()
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a cancelled, interrupted or failed job again; its finished windows are reused."""
        with self.lock:
            job = self.get(job_id)
            if job.state not in RESUMABLE:
                raise VidrefineError(f"job {job.id} is {job.state}: only a stopped job resumes")
            job.state, job.message, job.eta_s = QUEUED, "", None
            self._changed()
        return job

    def remove(self, job_id: str, delete: Callable[[Job], None]) -> None:
        """Forget a job that is not running; `delete` removes its files."""
        with self.lock:
            job = self.get(job_id)
            if job.state == RUNNING:
                raise VidrefineError(f"job {job.id} is running: cancel it first")
            delete(job)
            del self.jobs[job.id]
            self._changed()

    def wait(self, job_id: str, timeout_s: float | None = None) -> Job:
        """Block until the job has stopped (done, failed or cancelled)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self.lock:
            job = self.get(job_id)
            while job.state in ACTIVE:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.lock.wait(left)
        return job

    def shutdown(self) -> list[Job]:
        """Stop the worker: the running job is cancelled (its finished windows kept) and
        listed as interrupted, queued jobs stay queued for the next start; returns the jobs
        stopped, once the worker has ended (a job stops at its next step).
        """
        with self.lock:
            self.stopping = True
            running = [job for job in self.jobs.values() if job.state == RUNNING]
            for job in running:
                self.cancel_flags[job.id].set()
            self.lock.notify_all()
        if self.worker.is_alive():
            self.worker.join()
        return running

    def position(self, job: Job) -> int:
        """1 for the running job (or the next to run), 2 for the one after, 0 when stopped."""
        return self.positions().get(job.id, 0)

    def positions(self) -> dict[str, int]:
        """`position` of every job in the line, by job id (stopped jobs are not in it)."""
        with self.lock:
            line = [j for j in self._ordered() if j.state in ACTIVE]
        return {job.id: place for place, job in enumerate(line, 1)}

    def listing(self) -> list[Job]:
        """Every job, oldest first."""
        with self.lock:
            return self._ordered()

    def _ordered(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created)

    def _next(self) -> Job | None:
        with self.lock:
            while not self.stopping:
                queued = [j for j in self._ordered() if j.state == QUEUED]
                if queued:
                    job = queued[0]
                    job.state, job.message = RUNNING, ""
                    job.reused_windows = job.steps_done = 0  # a run counts its own (a resume)
                    self.cancel_flags[job.id] = threading.Event()
                    self._changed()
                    return job
                self.lock.wait()
            return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            progress = JobProgress(job, self.cancel_flags[job.id], self._changed_locked)
            state, message = self._run(job, progress)
            with self.lock:
                if state == CANCELLED and self.stopping:
                    state, message = INTERRUPTED, STOPPED_MESSAGE
                job.state, job.message, job.eta_s = state, message, None
                del self.cancel_flags[job.id]
                self._changed()

    def _run(self, job: Job, progress: JobProgress) -> tuple[str, str]:
        try:
            reused = self.run(job, progress)
        except Interrupted as exc:
            cancelled = self.cancel_flags[job.id].is_set()
            return (CANCELLED, CANCEL_MESSAGE) if cancelled else (FAILED, str(exc))
        except VidrefineError as exc:
            return FAILED, " ".join(str(exc).split())
        except Exception as exc:  # a bug: one line in the page, the stack on the server
            return FAILED, bug_line(exc)
        note = f"{reused} windows reused from an earlier run" if reused else ""
        return DONE, note

    def _changed_locked(self) -> None:
        with self.lock:
            self._changed()

    def _changed(self) -> None:
        """Save the list and wake waiters (the lock is held)."""
        with atomic_output(self.state_file, overwrite=True) as temp:
            temp.write_text(json.dumps([asdict(j) for j in self._ordered()], indent=1))
        self.lock.notify_all()

    def _load(self) -> None:
        if not self.state_file.is_file():
            return
        try:
            saved = json.loads(self.state_file.read_text())
            jobs = [Job(**item) for item in saved]
        except (OSError, ValueError, TypeError):
            return  # a damaged list starts empty; the files it named stay where they are
        killed = [job for job in jobs if job.state == RUNNING]  # its server died (kill -9)
        for job in killed:
            job.state, job.message, job.eta_s = INTERRUPTED, STOPPED_MESSAGE, None
        self.jobs = {job.id: job for job in jobs}
        if killed:
            with self.lock:
                self._changed()


__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "INTERRUPTED",
    "QUEUED",
    "RESUMABLE",
    "RUNNING",
    "Job",
    "JobProgress",
    "JobQueue",
]


def bug_line(exc: Exception) -> str:
    """An unexpected exception as the page's one line; its stack goes to the server's terminal."""
    traceback.print_exc(file=sys.stderr)
    first = first_line(exc, "(no message)")
    return (
        f"unexpected {type(exc).__name__}: {first} (this is a bug in vidrefine; the "
        "server's terminal shows the stack)"
    )
