"""`tune train` and `tune export`: it learns, and what it writes is the model it trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train.conftest import invoke
from vidrefine.checkpoints.dit import load_dit
from vidrefine.checkpoints.vae import load_vae
from vidrefine.errors import BadCheckpoint
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.quality.metrics import psnr_db
from vidrefine.train.cache import TrainCache
from vidrefine.train.checkpoint import RunFolder
from vidrefine.train.loop import split_windows
from vidrefine.train.lora import apply_lora, apply_loras, read_adapter
from vidrefine.train.loss import LossSettings
from vidrefine.train.metrics import validation_loss
from vidrefine.train.model import ModelSettings, make_trainable, velocity_of
from vidrefine.train.preview import decode_window, preview_config, refine_latent

STEPS = 30
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, tune_cache, tune_weights) -> Path:
    """30 LoRA steps on one window (the other is held out: validated, and previewed at steps 0
    and 30)."""
    run = tmp_path_factory.mktemp("tuned") / "run"
    code, output = invoke(
        [
            "tune",
            "train",
            tune_cache,
            "-o",
            run,
            "--steps",
            STEPS,
            "--lora-rank",
            "8",
            "--lr",
            "3e-3",
            "--val-windows",
            "1",
            "--checkpoint-every",
            "15",
            "--log-every",
            "10",
            "--validate-every",
            "30",
            "--val-report",
            "--weights",
            tune_weights,
        ]
    )
    assert code == 0, output
    return run


def _base(weights: Path) -> torch.nn.Module:
    return load_dit(weights / "stage2.pt", None, stage=2).eval()


def _models(dit: torch.nn.Module, weights: Path) -> StageTwoModels:
    return StageTwoModels(load_vae(weights / "3d-vae.pt"), dit, CPU, torch.float32, torch.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr_db(float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()))


def test_training_lowers_the_loss_and_refines_closer_when_overfitting_one_window(
    tuned_run, tune_cache, tune_weights
) -> None:
    cache = TrainCache(tune_cache)
    (train_window,) = split_windows(len(cache), 1, 0).train
    base, tuned = (
        _base(tune_weights),
        apply_lora(_base(tune_weights), tuned_run / "adapter.safetensors"),
    )

    def fixed_loss(dit: torch.nn.Module) -> float:
        velocity = velocity_of(dit, CPU, torch.float32)
        return validation_loss(velocity, cache, [train_window], LossSettings(), CPU)

    assert fixed_loss(tuned) < 0.8 * fixed_loss(base)
    window = cache.window(train_window)
    hr = decode_window(_models(base, tune_weights), window.hr[None])
    config = preview_config()  # upscale's defaults (guidance 13), 4 steps
    psnr = {
        name: _psnr(decode_window(models, refine_latent(models, config, window)), hr)
        for name, models in (
            ("base", _models(base, tune_weights)),
            ("tuned", _models(tuned, tune_weights)),
        )
    }
    assert psnr["tuned"] > psnr["base"] + 0.5, psnr


def test_run_writes_metrics_checkpoints_and_plot_when_it_trains(tuned_run) -> None:
    records = RunFolder(tuned_run).read_metrics()
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == list(range(1, STEPS + 1))
    assert all(r["lr"] == 3e-3 and r["step_s"] > 0 for r in losses)
    assert all(650 <= s <= 750 for r in losses for s in r["degradation_steps"])
    assert [r["step"] for r in records if "val_loss" in r] == [30]
    assert [r["step"] for r in records if "preview_psnr" in r] == [0, 30]
    assert [c.step for c in RunFolder(tuned_run).complete()] == [15, 30]
    assert (tuned_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    described = json.loads((tuned_run / "run.json").read_text())
    assert described["settings"]["model"]["rank"] == 8 and described["base"]["fingerprint"]


def _trained_module(run: Path, weights: Path) -> torch.nn.Module:
    """The model as training left it: the base, peft's adapters, the last checkpoint's weights."""
    settings = json.loads((run / "run.json").read_text())["settings"]["model"]
    model = settings | {"targets": tuple(settings["targets"]), "checkpointing": False}
    trainable = make_trainable(_base(weights), ModelSettings(**model))
    weights_, _, _ = RunFolder.load(RunFolder(run).latest())
    missing = trainable.module.load_state_dict(weights_, strict=False)
    assert not missing.unexpected_keys
    return trainable.module.eval()


def _output(dit: torch.nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 2, 16, 4, 4, generator=gen), torch.randn(1, 226, 32, generator=gen)
    with torch.no_grad():
        return dit(
            x,
            torch.tensor([700.0]),
            ctx,
            num_frames=torch.tensor([2.0]),
            ref_step=torch.tensor([676.0]),
        )


def test_adapter_file_gives_the_trained_models_output_when_applied(tuned_run, tune_weights):
    adapter = read_adapter(tuned_run / "adapter.safetensors")
    assert adapter.config.r == 8 and len(adapter.pairs) == 5  # one block, five linears
    assert all(k.startswith("base_model.model.") for k in _file_keys(tuned_run))
    trained = _output(_trained_module(tuned_run, tune_weights))
    merged = _output(apply_lora(_base(tune_weights), tuned_run / "adapter.safetensors"))
    base = _output(_base(tune_weights))
    assert torch.allclose(merged, trained, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base, trained, atol=1e-2)


def _file_keys(run: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(run / "adapter.safetensors"), framework="pt") as f:
        return list(f.keys())  # noqa: SIM118


def test_scale_zero_is_exactly_the_base_model_when_applied(tuned_run, tune_weights) -> None:
    base = _base(tune_weights)
    zero = apply_loras(_base(tune_weights), [(tuned_run / "adapter.safetensors", 0.0)])
    assert all(torch.equal(v, zero.state_dict()[k]) for k, v in base.state_dict().items())


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_merged_export_equals_the_adapter_applied_when_loaded_as_stage2(
    tuned_run, tune_weights, tmp_path, suffix
) -> None:
    out = tmp_path / f"stage2-tuned{suffix}"
    code, output = invoke(
        ["tune", "export", tuned_run, "--merge", "-o", out, "--weights", tune_weights]
    )
    assert code == 0, output
    exported = load_dit(out, None, stage=2)
    applied = apply_lora(_base(tune_weights), tuned_run / "adapter.safetensors")
    assert all(torch.equal(v, exported.state_dict()[k]) for k, v in applied.state_dict().items())
    code, output = invoke(
        ["tune", "export", tuned_run, "--merge", "-o", out, "--weights", tune_weights]
    )
    assert code == 4, output  # never overwritten without --overwrite


def test_adapter_for_another_base_model_is_refused_when_applied(tuned_run, tmp_path) -> None:
    from tests.train.conftest import write_weights

    other = write_weights(tmp_path / "other", tmp_path / "no-t5", seed=7)
    with pytest.raises(BadCheckpoint, match="trained on another base model"):
        apply_lora(_base(other), tuned_run / "adapter.safetensors")
    code, output = invoke(
        ["tune", "export", tuned_run, "--merge", "-o", tmp_path / "x.pt", "--weights", other]
    )
    assert code == 5 and output.count("\n") == 1, output
    assert "trained on another base model" in output and not (tmp_path / "x.pt").exists()


def test_previews_hold_clips_and_a_compare_report_when_asked_for(tuned_run, tune_cache) -> None:
    from vidrefine.io.probe import probe

    cache = TrainCache(tune_cache)
    (held,) = split_windows(len(cache), 1, 0).val  # the run's held-out window (seed 0)
    frames = 4 * (cache.window(held).hr.shape[0] - 1) + 1  # pixel frames of its (T, C, h, w)
    for step in ("step-000000", "step-000030"):
        folder = tuned_run / "previews" / step
        for clip in ("input.mp4", "hr.mp4", "refined.mp4"):
            info = probe(folder / clip)
            assert (info.frame_count, info.display_hw) == (frames, (32, 32))
    report = tuned_run / "previews" / "step-000030" / "report"
    assert (report / "index.html").is_file() and (report / "metrics.json").is_file()


def test_adapter_whose_tensors_disagree_with_its_rank_is_refused_when_read(tuned_run, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = tuned_run / "adapter.safetensors"
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    key = next(k for k in tensors if k.endswith("lora_A.weight"))
    tensors[key] = tensors[key][:4]  # rank 4 where the config says 8
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    with pytest.raises(BadCheckpoint, match="has rank 4, the adapter's config says 8"):
        read_adapter(edited)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("run/adapter.safetensors", ("run/adapter.safetensors", 1.0)),
        ("run/adapter.safetensors:0", ("run/adapter.safetensors", 0.0)),
        ("run/adapter.safetensors:0.5", ("run/adapter.safetensors", 0.5)),
        ("odd:name.safetensors", ("odd:name.safetensors", 1.0)),
    ],
)
def test_lora_option_splits_file_and_scale_when_parsed(spec, expected) -> None:
    from vidrefine.train.lora import parse_lora_spec

    path, scale = parse_lora_spec(spec)
    assert (str(path), scale) == expected


def test_lora_option_refuses_an_absurd_scale_when_parsed() -> None:
    from vidrefine.errors import BadInput
    from vidrefine.train.lora import parse_lora_spec

    with pytest.raises(BadInput, match="not between -10 and 10"):
        parse_lora_spec("a.safetensors:50")
