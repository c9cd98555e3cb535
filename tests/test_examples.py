"""The examples run as scripts: usage without arguments, exit code 2 on a bad command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_API = Path("examples") / "python_api.py"
USAGE = "python examples/python_api.py upscale IN.mp4 OUT.mp4"


def run_example(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PYTHON_API), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_api_example_prints_its_usage_and_exits_0_when_run_without_arguments():
    done = run_example()

    assert done.returncode == 0, done.stderr
    assert USAGE in done.stdout
    assert "demo OUT_FOLDER" in done.stdout


@pytest.mark.parametrize(
    "args", [("frobnicate",), ("upscale", "only-one.mp4")], ids=["unknown", "too_few_args"]
)
def test_python_api_example_prints_usage_and_exits_2_without_a_traceback_when_misused(args):
    done = run_example(*args)

    assert done.returncode == 2
    assert USAGE in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
