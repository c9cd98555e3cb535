"""benchmarks/refine_gpu.py --cpu runs end to end and reports every phase (issue 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import one_thread_environment

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("T5", "I/O read", "VAE encode", "DiT pass 1", "VAE decode", "I/O write", "end to end")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "refine_gpu.py"), "--cpu", "--steps", "1"]
    command += ["--paths", "fast", "faithful", "low-vram"]
    done = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=one_thread_environment(),
    )  # fmt: skip
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
    # tiny DiT of refine_gpu.TINY: D=64, 2 layers, 2 heads of 32, 2x8x8 latents, batch 2
    _, data = cpu_run
    d, layers, heads, batch = 64, 2, 2, 2
    tokens = 2 * 4 * 4 + 226
    linear = 2 * batch * tokens * 12 * d * d * layers  # qkv 3D^2 + out D^2 + MLP 8D^2
    attention = 4 * batch * heads * tokens * tokens * (d // heads) * layers
    for run in data["runs"]:
        counted = run["flops"]["DiT pass 1"]
        assert 1.0 <= counted / (linear + attention) < 1.15, (counted, linear + attention)
        assert all(seconds > 0 for seconds in run["seconds"].values())


def test_cpu_benchmark_streams_two_blocks_on_the_low_vram_path_when_run(cpu_run) -> None:
    from benchmarks.refine_gpu import TINY
    from vidrefine.plan.memory import dit_block_params

    _, data = cpu_run
    peaks = {run["path"]: run["peaks"]["DiT pass 1"] for run in data["runs"]}
    block_bytes = 4 * dit_block_params(TINY.dit)  # fp32 on the CPU
    # the same pass, plus the running block's copy and the next one arriving
    assert peaks["low-vram"] - peaks["fast"] == pytest.approx(2 * block_bytes, rel=0.05)


def test_offload_benchmark_prints_every_variant_and_the_bytes_streamed_when_run_on_cpu(
    capsys,
) -> None:
    from benchmarks import offload
    from vidrefine.plan.memory import dit_block_params

    assert offload.main(["--cpu", "--repeats", "1"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if "| 96x64" in line]
    assert [row[3].strip() for row in rows] == list(offload.VARIANTS)
    streamed = 4 * offload.CPU_DIT.num_layers * dit_block_params(offload.CPU_DIT) / 1024**3
    assert [float(row[7]) for row in rows] == pytest.approx([0, streamed, streamed], abs=1e-3)


def test_dit_block_benchmark_rows_share_flops_and_name_the_kernel_when_run_on_cpu(capsys) -> None:
    from benchmarks import dit_block

    assert dit_block.main(["--cpu", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "attention kernel: flash (cpu)" in out
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines()[3:]}
    assert set(rows) >= {"attention", "prologue split", "prologue joint", "block joint"}
    case = dit_block.Case(dit_block.CPU_DIT, dit_block.CPU_GRID, None, None)
    d, s, heads = case.cfg.hidden_size, case.tokens, case.cfg.num_heads
    attention = 4 * 2 * heads * s * s * case.cfg.head_dim
    linear = 2 * 2 * s * 12 * d * d  # qkv 3, out 1, MLP 2 x 4 (D^2 per token each)
    assert float(rows["attention"][3]) == pytest.approx(attention / 1e12, rel=1e-2)
    assert float(rows["block joint"][3]) == pytest.approx((attention + linear) / 1e12, rel=1e-2)
