"""The training memory plan (measured terms, refusal before loading) and bad input, one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train.conftest import invoke
from vidrefine.config import DiTConfig
from vidrefine.models.dit import VideoDiT
from vidrefine.runtime.live_memory import LiveTensorMemory
from vidrefine.train.memory import GB, activation_gb, lora_param_count
from vidrefine.train.model import ModelSettings, make_trainable

CONFIG = DiTConfig(
    hidden_size=128,
    num_layers=2,
    num_heads=2,
    text_dim=32,
    time_embed_dim=64,
    stage2_embeddings=True,
)


def test_planned_activations_match_the_measured_peak_when_training_on_the_cpu() -> None:
    checkpointing = True  # the default; the per-block term is in the sum either way
    torch.manual_seed(0)
    trainable = make_trainable(VideoDiT(CONFIG), ModelSettings(rank=4, checkpointing=checkpointing))
    x, ctx = torch.randn(1, 4, 16, 32, 32), torch.randn(1, 226, 32)
    tokens = 4 * 16 * 16 + 226
    with LiveTensorMemory() as meter:
        out = trainable.module(
            x,
            torch.tensor([500.0]),
            ctx,
            num_frames=torch.tensor([4.0]),
            ref_step=torch.tensor([676.0]),
        )
        out.pow(2).mean().backward()
    grads = sum(p.numel() * 4 for p in trainable.parameters())
    planned = activation_gb(CONFIG, tokens, autocast=False, checkpointing=checkpointing) * GB
    assert 0.8 * planned <= meter.peak - grads <= 1.2 * planned


def test_planned_adapter_size_is_the_trained_parameter_count_when_counted() -> None:
    settings = ModelSettings(rank=4, targets=("qkv", "fc2", "modulation"))
    trainable = make_trainable(VideoDiT(CONFIG), settings)
    assert lora_param_count(CONFIG, settings) == sum(p.numel() for p in trainable.parameters())


def _train(cache: Path, run: Path, weights: Path, *extra) -> tuple[int, str]:
    return invoke(["tune", "train", cache, "-o", run, "--steps", "1", "--weights", weights, *extra])


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidrefine: error: "), output
    return lines[0]


def test_a_run_that_cannot_fit_stops_before_loading_when_planned(
    tmp_path, tune_cache, tune_weights
):
    code, output = _train(tune_cache, tmp_path / "run", tune_weights, "--vram", "0.0001")
    assert code == 6, output
    assert "more than the 0.0 GB budget" in _one_error_line(output)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [
        (["--resume"], 2, "no run to resume"),
        (["--val-windows", "2"], 2, "leave some to train"),
        (["--lora-targets", "qkv,attention"], 2, "use some of qkv"),
        (["--steps-range", "650"], 2, "give LOW-HIGH"),
        (["--steps-range", "700-650"], 2, "need 0 <= low <= high"),
        (["--accumulate", "0"], 2, "at least one micro-batch"),
        (["--log-every", "0"], 2, "log at least every"),
        (["--keep", "-1"], 2, "not a count of steps"),
    ],
)
def test_bad_training_settings_are_one_line_when_given(
    tmp_path, tune_cache, tune_weights, extra, code, expected
) -> None:
    got, output = _train(tune_cache, tmp_path / "run", tune_weights, *extra)
    assert got == code, output
    assert expected in _one_error_line(output)
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_cache_is_one_line_when_trained_on(tmp_path, tune_weights) -> None:
    code, output = _train(tmp_path, tmp_path / "run", tune_weights)
    assert code == 2 and "not a finished training cache" in _one_error_line(output)


def test_resuming_with_another_rank_is_one_line_when_the_run_has_one(
    tmp_path, tune_cache, tune_weights
) -> None:
    run = tmp_path / "run"
    code, output = _train(tune_cache, run, tune_weights, "--lora-rank", "4")
    assert code == 0, output
    code, output = _train(tune_cache, run, tune_weights, "--lora-rank", "8", "--resume")
    assert code == 2 and "model.rank was 4, now 8" in _one_error_line(output)
    code, output = _train(tune_cache, run, tune_weights, "--lora-rank", "4")
    assert code == 4 and "pass --resume" in _one_error_line(output)
