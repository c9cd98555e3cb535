"""`vidrefine ARGS` in a forked child process, optionally SIGKILLed in the middle of writing a
checkpoint, as a power cut or the OOM killer would stop it.

The child starts with everything the tests imported (no second interpreter start-up) and runs
torch on one thread: OpenMP's thread pool does not survive a fork, and every run a test compares
goes through here, so they share that setting. A Python audit hook in the child (no patching of
vidrefine) watches the files it opens: when the run opens `state.json` inside the temporary
folder of checkpoint `kill_at` (e.g. `step-000003`), that checkpoint's weights and optimizer are
written and its state is not, and the child kills itself.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence


def _killer(kill_at: str) -> Callable[[str, tuple], None]:
    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | os.PathLike):
            path = os.fspath(args[0])
            folder = os.path.basename(os.path.dirname(path))
            if path.endswith("state.json") and folder.startswith(f".{kill_at}.partial-"):
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def run_forked(args: Sequence[object], *, kill_at: str | None = None) -> int:
    """Run `vidrefine ARGS` in a child; its exit code, or minus the signal that ended it."""
    pid = os.fork()
    if pid == 0:  # the child never returns to the caller
        code = 1
        try:
            import torch

            torch.set_num_threads(1)
            if kill_at is not None:
                sys.addaudithook(_killer(kill_at))
            from vidrefine.cli import main

            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
