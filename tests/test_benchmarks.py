"""benchmarks/refine_gpu.py --cpu runs end to end and reports every phase (issue 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("T5", "I/O read", "VAE encode", "DiT pass 1", "VAE decode", "I/O write", "end to end")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "refine_gpu.py"), "--cpu", "--steps", "1"]
    done = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_cpu_benchmark_table_lists_every_phase_when_run_at_the_smallest_size(cpu_run) -> None:
    stdout, _ = cpu_run
    for path in ("fast path", "faithful path"):
        assert path in stdout
    for phase in PHASES:
        assert stdout.count(phase) >= 2, phase  # once per path
    assert "speed-up of the fast path" in stdout


def test_cpu_benchmark_counts_dit_flops_like_the_analytic_formula_when_run(cpu_run) -> None:
    # tiny DiT of refine_gpu.TINY: D=64, 2 layers, 2 heads of 32, 3x8x12 latents, batch 2
    _, data = cpu_run
    d, layers, heads, batch = 64, 2, 2, 2
    tokens = 3 * 4 * 6 + 226
    linear = 2 * batch * tokens * 12 * d * d * layers  # qkv 3D^2 + out D^2 + MLP 8D^2
    attention = 4 * batch * heads * tokens * tokens * (d // heads) * layers
    for run in data["runs"]:
        counted = run["flops"]["DiT pass 1"]
        assert 1.0 <= counted / (linear + attention) < 1.15, (counted, linear + attention)
        assert all(seconds > 0 for seconds in run["seconds"].values())
