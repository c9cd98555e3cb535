"""`python tests/train/killer.py ARGS`: `vidrefine ARGS`, SIGKILLed in the middle of writing a
checkpoint, as a power cut or the OOM killer would stop it.

A Python audit hook (no patching of vidrefine) watches the files opened: when the run opens
`state.json` inside the temporary folder of checkpoint `$VIDREFINE_TEST_KILL_AT` (e.g.
`step-000004`), its weights and optimizer are written and its state is not: the process
kills itself.
"""

from __future__ import annotations

import os
import signal
import sys

KILL_AT = os.environ["VIDREFINE_TEST_KILL_AT"]


def _hook(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], (str, os.PathLike)):
        path = os.fspath(args[0])
        folder = os.path.basename(os.path.dirname(path))
        if path.endswith("state.json") and folder.startswith(f".{KILL_AT}.partial-"):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.addaudithook(_hook)
    from vidrefine.cli import main

    main(sys.argv[1:])
