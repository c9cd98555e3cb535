"""`python -m vidrefine` for one torchrun rank, watched by a Python audit hook.

The hook sees the operating-system calls vidrefine makes (nothing of vidrefine is replaced):
every `os.rename`/`os.replace`/`os.link` whose destination is a video file is appended to
`$VIDREFINE_TEST_EVENTS/rank<RANK>.log`. When `$VIDREFINE_TEST_DIE_RANK` is this rank (or
"first": the first rank to get there), the process writes its rank to `died` in that folder
and kills itself with SIGKILL at its first such call (in torchrun's first attempt only, so
that a restarted group goes on): a rank dying the hard way with one clip's windows in the
resume store and its output not yet in place.

When `$VIDREFINE_TEST_WAIT_FOR_PEER` is set, a rank that is about to publish its first output
waits (up to that many seconds) until another rank has published one: the rank that got going
first cannot also draw every other clip of a dynamic hand-out while a slower rank is still
loading its models, so that a test can see every rank make a clip whatever the machine's load.

At exit (after vidrefine's own exit handlers) the worker writes the names of the native threads
still alive to `threads-rank<RANK>.log`: a process group that `shutdown()` really destroyed
leaves no gloo thread behind to be torn down while the interpreter finalises.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path

VIDEO = (".mp4", ".mkv", ".mov")
RANK = os.environ.get("RANK", "0")
WAIT_FOR_PEER = "VIDREFINE_TEST_WAIT_FOR_PEER"


def _on_event(event: str, args: tuple) -> None:
    if event not in ("os.rename", "os.link") or len(args) < 2:
        return
    target = os.fsdecode(args[1]) if isinstance(args[1], str | bytes) else ""
    if not target.endswith(VIDEO) or os.path.basename(target).startswith("."):
        return
    folder = Path(os.environ["VIDREFINE_TEST_EVENTS"])
    if _chosen_to_die(folder):
        os.kill(os.getpid(), signal.SIGKILL)
    first = not (folder / f"rank{RANK}.log").exists()
    with (folder / f"rank{RANK}.log").open("a") as log:
        log.write(str(Path(target).resolve()) + "\n")
    if first and os.environ.get(WAIT_FOR_PEER):
        _wait_for_peer(folder, float(os.environ[WAIT_FOR_PEER]))


def _wait_for_peer(folder: Path, seconds: float) -> None:
    """Until another rank's log of published files exists in `folder` (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.name != f"rank{RANK}.log" for p in folder.glob("rank*.log")):
            return
        time.sleep(0.05)


def _chosen_to_die(folder: Path) -> bool:
    """Whether this rank dies now; the one that does records its rank in `folder/died`."""
    wanted = os.environ.get("VIDREFINE_TEST_DIE_RANK")
    if wanted not in (RANK, "first") or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return False
    try:
        fd = os.open(folder / "died", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return False  # another rank was first
    os.write(fd, RANK.encode())
    os.close(fd)
    return True


def _record_threads() -> None:
    """Write the names of this process's native threads, one a line, to the events folder."""
    tasks = Path("/proc/self/task")
    names = [(task / "comm").read_text().strip() for task in sorted(tasks.iterdir())]
    folder = Path(os.environ["VIDREFINE_TEST_EVENTS"])
    (folder / f"threads-rank{RANK}.log").write_text("\n".join(names) + "\n")


if __name__ == "__main__":
    atexit.register(_record_threads)  # first registered, so it runs after vidrefine's handlers
    sys.addaudithook(_on_event)
    from vidrefine.cli import main

    main(sys.argv[1:])
