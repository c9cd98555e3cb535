"""`torchrun --nproc-per-node 2 -m vidrefine tune train` (gloo): DDP over LoRA equals one process
with the same global batch; each rank draws from its own degradation steps; rank 0 alone prints.
"""

from __future__ import annotations

import pytest
import torch

from tests.distributed.harness import torchrun
from tests.train.conftest import invoke
from vidrefine.train.checkpoint import RunFolder
from vidrefine.train.lora import read_adapter

ARGS = ["--steps", "3", "--lora-rank", "4", "--lr", "1e-3", "--log-every", "1"]


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_the_same_global_batch_when_run_under_torchrun(
    tmp_path, tune_cache, tune_weights
) -> None:
    ranks_run, alone = tmp_path / "ranks", tmp_path / "alone"
    common = [*ARGS, "--weights", str(tune_weights)]
    done = torchrun(2, ["tune", "train", str(tune_cache), "-o", str(ranks_run), *common], tmp_path)
    assert done.returncode == 0, done.console + done.stderr[0] + done.stderr[1]
    code, output = invoke(["tune", "train", tune_cache, "-o", alone, *common, "--accumulate", "2"])
    assert code == 0, output
    ours, theirs = (
        read_adapter(ranks_run / "adapter.safetensors"),
        read_adapter(alone / "adapter.safetensors"),
    )
    for name, (a, b) in ours.pairs.items():
        assert torch.allclose(a, theirs.pairs[name][0], atol=1e-5)
        assert torch.allclose(b, theirs.pairs[name][1], atol=1e-5)
    for key, value in ours.modules.items():
        assert torch.allclose(value, theirs.modules[key], atol=1e-5)
    records = [r for r in RunFolder(ranks_run).read_metrics() if "loss" in r]
    reference = [r for r in RunFolder(alone).read_metrics() if "loss" in r]
    assert [r["degradation_steps"] for r in records] == [r["degradation_steps"] for r in reference]
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in reference], rel=1e-5)
    for first, second in (r["degradation_steps"] for r in records):
        assert 650 <= first <= 700 < second <= 750  # rank 0 and rank 1: disjoint sub-ranges
    assert "step 3/3" in done.stderr[0]
    assert "step" not in done.stderr[1] + done.stdout[1]  # only rank 0 prints
    assert not done.gloo_threads_at_exit()  # the process group was shut down
