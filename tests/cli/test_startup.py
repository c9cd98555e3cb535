"""Help, `info FILE` and `info FILE --shots` start without the model stack: torch loads only
when a command needs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.media import make_clip
from vidrefine.cli import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "diffusers")

# Runs the CLI's main for each argument list in one fresh process and reports, per invocation,
# its exit code and the heavy packages loaded so far.
PROBE = """
import json, sys
from vidrefine.cli import main
report = []
for args in json.loads(sys.argv[1]):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    loaded = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
    report.append({"args": args, "code": code, "loaded": loaded})
print(json.dumps(report), file=sys.stderr)
"""


def test_help_and_info_import_no_torch_when_run_in_a_fresh_process(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=3, size_hw=(32, 48))
    runs = [["--help"], *([name, "--help"] for name in COMMAND_MODULES), ["info", str(clip.path)]]
    runs.append(["info", str(clip.path), "--shots"])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(runs), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert [r["args"] for r in report] == runs
    for run in report:
        assert run["code"] == 0, run
        assert run["loaded"] == [], f"vidrefine {' '.join(run['args'])} imported {run['loaded']}"
