"""The examples run as scripts: usage without arguments, exit code 2 on a bad command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from vidrefine.config import parse_size

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


MOST_PIXELS_FOR_TINY = 256 * 256  # a size the tiny random models refine in seconds on a CPU


def tiny_weight_sizes(source: str) -> list[str | None]:
    """The `size` of each `from_pretrained(...)` call in code that writes tiny weights (the
    functions that do, or the whole code; None: no size given, the default 1080p); a `**name`
    argument is looked up in a dict literal.
    """
    tree = ast.parse(source)
    if "write_tiny_weights" not in source:
        return []
    scopes = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and "write_tiny_weights" in ast.unparse(node)
    ]
    dicts = {
        target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    sizes = []
    for call in (node for scope in scopes or [tree] for node in ast.walk(scope)):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "from_pretrained":
            sizes.append(_size_argument(call, dicts))
    return sizes


def _size_argument(call: ast.Call, dicts: dict[str, ast.Dict]) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "size":
            return ast.literal_eval(keyword.value)
        if keyword.arg is None and isinstance(keyword.value, ast.Name):
            spread = ast.literal_eval(dicts[keyword.value.id])
            if "size" in spread:
                return spread["size"]
    return None


def assert_small(sizes: list[str | None]) -> None:
    assert sizes, "no from_pretrained call on tiny weights"
    for size in sizes:
        assert size is not None, "tiny weights at the default 1080p: pass a small size"
        request = parse_size(size)
        assert request.exact_hw is not None, size  # a short side keeps the aspect: unbounded
        assert request.exact_hw[0] * request.exact_hw[1] <= MOST_PIXELS_FOR_TINY, size


def test_python_api_example_demo_passes_a_small_size_when_it_uses_tiny_weights():
    assert_small(tiny_weight_sizes((ROOT / PYTHON_API).read_text()))
