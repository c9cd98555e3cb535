"""Run `vidrefine` under torchrun as a user would: `python3 -m torch.distributed.run ...`.

Each rank runs `tests.distributed.worker`, which is `python -m vidrefine` plus a Python audit
hook (no patching of vidrefine): the hook records, per rank, every file vidrefine publishes by
rename or hard link, and can kill its own rank with SIGKILL at the moment it is about to publish
its first output (all of that clip's windows are then in the resume store): the rank named by
`DIE_RANK`, or with "first" whichever rank gets there first (`RankRun.died`). torchrun writes
each rank's stdout and stderr to its own files (`--redirects 3`), so a test can tell who
printed what.

`fork_ranks` starts the ranks of the tests that call torch.distributed themselves (gloo, no
torchrun) by fork: each starts with what the test process imported, not with seconds of
interpreter and torch start-up per rank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIE_RANK = "VIDREFINE_TEST_DIE_RANK"  # the rank the worker kills before it publishes an output
WAIT_FOR_PEER = "VIDREFINE_TEST_WAIT_FOR_PEER"  # seconds a rank's first publish waits for another's
EVENT_DIR = "VIDREFINE_TEST_EVENTS"  # where the worker writes rank<N>.log of published files


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fork_ranks(worker: Callable[..., None], args: tuple, nprocs: int) -> None:
    """`worker(rank, *args)` in `nprocs` forked processes; raises if any of them failed.

    Each rank runs torch on one thread, set before anything else: OpenMP's thread pool does not
    survive a fork (and one thread a rank is what torchrun's OMP_NUM_THREADS=1 gives).
    """
    import torch.multiprocessing as mp

    mp.start_processes(_one_thread, args=(worker, *args), nprocs=nprocs, start_method="fork")


def _one_thread(rank: int, worker: Callable[..., None], *args: object) -> None:
    import torch

    torch.set_num_threads(1)
    worker(rank, *args)


@dataclass
class RankRun:
    """One torchrun run: its exit code, each rank's stdout and stderr, and what each published."""

    returncode: int
    console: str  # torchrun's own output (stdout and stderr together)
    stdout: dict[int, str] = field(default_factory=dict)
    stderr: dict[int, str] = field(default_factory=dict)
    published: dict[int, list[Path]] = field(default_factory=dict)
    died: int | None = None  # the rank the worker killed, if one was
    threads_at_exit: dict[int, list[str]] = field(default_factory=dict)  # native thread names

    def gloo_threads_at_exit(self) -> dict[int, list[str]]:
        """Per rank, the gloo threads still alive when it exited (none once shutdown() ran)."""
        found = {r: [n for n in names if "gloo" in n] for r, names in self.threads_at_exit.items()}
        return {rank: names for rank, names in found.items() if names}

    def publishers(self, path: Path) -> list[int]:
        """The ranks that published `path` (renamed or linked a file into place there)."""
        return [rank for rank, paths in self.published.items() if path in paths]


def torchrun(
    nproc: int,
    args: list[str],
    work: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> RankRun:
    """`torchrun --nproc-per-node NPROC -m vidrefine ARGS` (through the audit worker), in `work`.

    `work` receives the logs and event files; `env` adds to the environment (HF offline is set).
    """
    logs, events = work / "torchrun-logs", work / "events"
    events.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-port",
        str(free_port()),
        "--log-dir",
        str(logs),
        "--redirects",
        "3",
        "-m",
        "tests.distributed.worker",
        *args,
    ]
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        EVENT_DIR: str(events),
        **(env or {}),
    }
    done = subprocess.run(
        command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout
    )
    run = RankRun(done.returncode, done.stdout + done.stderr)
    for rank in range(nproc):
        run.stdout[rank] = _rank_log(logs, rank, "stdout.log")
        run.stderr[rank] = _rank_log(logs, rank, "stderr.log")
        record = events / f"rank{rank}.log"
        lines = record.read_text().splitlines() if record.is_file() else []
        run.published[rank] = [Path(line) for line in lines]
        record.unlink(missing_ok=True)
        threads = events / f"threads-rank{rank}.log"
        if threads.is_file():
            run.threads_at_exit[rank] = threads.read_text().splitlines()
            threads.unlink()
    died = events / "died"
    if died.is_file():
        run.died = int(died.read_text())
        died.unlink()
    _clear_logs(logs)
    return run


def _rank_log(logs: Path, rank: int, name: str) -> str:
    """Local rank `rank`'s log of the latest attempt (torchrun: <run>/attempt_<k>/<rank>/)."""
    found = sorted(logs.glob(f"*/attempt_*/{rank}/{name}"), key=lambda p: p.stat().st_mtime)
    return found[-1].read_text() if found else ""


def _clear_logs(logs: Path) -> None:
    """Remove a run's logs so that the next run's are the only ones found."""
    import shutil

    shutil.rmtree(logs, ignore_errors=True)
