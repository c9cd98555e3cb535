"""benchmarks/gpu_quick.sh, the prepared device run (issue 21), works on the CPU at toy sizes,
so the few device minutes a task may get are not lost to a typo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tiny_runs import one_thread_environment

ROOT = Path(__file__).resolve().parents[1]


def test_quick_stages_write_their_rows_and_the_table_lists_them_when_run_tiny(
    tmp_path, capsys
) -> None:
    from benchmarks import gpu_quick

    for stage in ("env", "conv", "dit"):
        assert gpu_quick.main([stage, "--out", str(tmp_path), "--cpu", "--tiny"]) == 0
    conv = json.loads((tmp_path / "conv.json").read_text())
    assert {r["variant"] for r in conv} >= {"ncdhw conv3d whole", "ndhwc conv2d_sum capped"}
    assert all("error" not in r for r in conv)
    dit = {r["variant"]: r for r in json.loads((tmp_path / "dit.json").read_text())}
    assert dit["cudnn"]["s_per_pass"] > 0 and "CUDA device" in dit["int8"]["error"]
    capsys.readouterr()
    assert gpu_quick.main(["table", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "ncdhw conv2d_sum whole" in table and "### VAE" in table and "not run" in table


@pytest.mark.slow
def test_the_whole_device_script_runs_to_its_table_when_dry_run_on_the_cpu(tmp_path) -> None:
    # Every stage, the VAE old vs new and refine_gpu.py: eight processes, mostly imports.
    out = tmp_path / "quick"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_quick.sh"), str(out), "--cpu", "--tiny"],
        capture_output=True, text=True, timeout=600, check=False, env=one_thread_environment(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    log = (out / "gpu_quick.log").read_text()
    for stage in ("env", "conv", "vae", "e2e", "norm", "dit", "tests"):
        assert f"== {stage}: exit 0" in log, log
    table = (out / "table.md").read_text()
    assert "| new |" in table and "| old |" in table and "| fast | 1 |" in table
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_quick.log",
        "gpu_quick_json.tgz",
        "table.md",
    ]  # few files: the device tool brings back at most 8
