"""Issue 22 item 7: a `vidrefine tune` adapter used by `upscale --lora FILE[:SCALE]`, the preset
key `lora` and `Refiner.from_pretrained(lora=...)`, on the tiny weights.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import tomllib
import torch
from lora_fixtures import write_adapter
from tiny_runs import TEST_PRESET, run_cli

from tests.media import make_clip
from vidrefine import Refiner
from vidrefine.checkpoints.dit import load_dit
from vidrefine.cli.options import build_config
from vidrefine.errors import BadCheckpoint, ExitCode
from vidrefine.presets import load_config


@pytest.fixture(scope="module")
def adapter(stage2_weights, tmp_path_factory) -> Path:
    base = load_dit(stage2_weights / "stage2.pt", stage=2)
    return write_adapter(tmp_path_factory.mktemp("lora") / "tuned.safetensors", base)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "in.mp4", frames=5, size_hw=(48, 64)).path


def upscale(clip: Path, out: Path, weights: Path, preset: Path, *extra: str) -> tuple[int, str]:
    args = [str(clip), "-c", "a fox in snow", "-o", str(out), "--weights", str(weights)]
    return run_cli(["upscale", *args, "--preset", str(preset), "--size", "64p", *extra])


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_lora_at_scale_0_is_the_base_and_at_scale_1_changes_the_frames_when_upscaled(
    clip, adapter, stage2_weights, tiny_preset, tmp_path
):
    outs = {name: tmp_path / f"{name}.mp4" for name in ("base", "zero", "tuned")}
    flags = {"base": [], "zero": ["--lora", f"{adapter}:0"], "tuned": ["--lora", str(adapter)]}
    for name, out in outs.items():
        code, text = upscale(clip, out, stage2_weights, tiny_preset, *flags[name])
        assert code == 0, text
    base, zero, tuned = (decoded(outs[name]).astype(int) for name in outs)
    assert np.array_equal(base, zero)
    assert np.abs(tuned - base).mean() > 1.0  # the adapter changes the picture


def test_missing_or_foreign_adapter_is_one_line_and_writes_nothing_when_upscaled(
    clip, stage2_weights, tiny_preset, tmp_path
):
    missing = tmp_path / "gone.safetensors"
    code, text = upscale(clip, tmp_path / "a.mp4", stage2_weights, tiny_preset, "--lora", missing)
    assert code == ExitCode.MISSING_WEIGHTS and "gone.safetensors" in text, text
    other = load_dit(stage2_weights / "stage2.pt", stage=2)
    with torch.no_grad():
        other.blocks[0].attn.qkv.weight.add_(1.0)  # another base model
    foreign = write_adapter(tmp_path / "foreign.safetensors", other)
    code, text = upscale(clip, tmp_path / "b.mp4", stage2_weights, tiny_preset, "--lora", foreign)
    assert code == ExitCode.BAD_CHECKPOINT, text
    errors = [line for line in text.splitlines() if line.startswith("vidrefine: error:")]
    assert len(set(errors)) == 1 and "bug" not in errors[0] and "Traceback" not in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.safetensors"]


def test_preset_key_lora_is_the_flag_and_show_config_writes_it_back_when_set(adapter, tmp_path):
    preset = tmp_path / "tuned.toml"
    preset.write_text(TEST_PRESET + f'\nlora = ["{adapter}:0.5"]\n')
    assert load_config(str(preset)).lora == (f"{adapter}:0.5",)
    flagged = build_config(str(preset), None, lora=(f"{adapter}:0.7", "b.safetensors"))
    assert flagged.lora == (f"{adapter}:0.7", "b.safetensors")  # the flags replace the preset's
    assert build_config(str(preset), None, lora=()).lora == (f"{adapter}:0.5",)
    code, text = run_cli(["upscale", "in.mp4", "-c", "a", "--preset", str(preset), "--show-config"])
    assert code == 0, text
    assert tomllib.loads(text)["lora"] == [f"{adapter}:0.5"]


def test_refiner_from_pretrained_merges_the_adapter_it_is_given_when_streaming(
    adapter, stage2_weights, tiny_preset
):
    frames = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)

    first = Refiner.from_pretrained(
        stage2_weights, str(tiny_preset), offline=True, progress=False, size="64p"
    )

    def streamed(**lora) -> np.ndarray:
        refiner = first.configured(str(tiny_preset), size="64p", **lora)  # T5 states shared
        return np.stack(list(refiner.stream(frames, caption="a fox"))).astype(int)

    base = streamed()
    assert np.array_equal(streamed(lora=(adapter, 0.0)), base)
    tuned = streamed(lora=adapter)
    assert np.abs(tuned - base).mean() > 1.0
    forms = ([f"{adapter}:1"], [(adapter, 1)], (str(adapter),), Path(adapter))
    assert {first.configured(lora=form).config.lora for form in forms} == {(f"{adapter}:1",)} | {
        (str(adapter),)
    }
    not_an_adapter = Refiner.from_pretrained(
        stage2_weights, str(tiny_preset), offline=True, progress=False, size="64p",
        lora=[(stage2_weights / "stage2.pt", 1.0)],
    )  # fmt: skip
    with pytest.raises(BadCheckpoint, match="not a vidrefine LoRA adapter"):
        next(not_an_adapter.stream(frames, caption="a fox"))


def test_resume_key_names_an_adapter_by_content_and_scale_when_paths_differ(
    adapter, stage2_weights, tmp_path, monkeypatch
):
    from fractions import Fraction

    from vidrefine.config import RunConfig
    from vidrefine.pipeline.loading import lora_specs, with_adapters
    from vidrefine.pipeline.refine import RefineJob, file_job_key
    from vidrefine.pipeline.resume import files_identity
    from vidrefine.plan.clip import SourceFacts, plan_clip
    from vidrefine.plan.hardware import CPU

    monkeypatch.chdir(adapter.parent)
    other = write_adapter(
        tmp_path / "other.safetensors", load_dit(stage2_weights / "stage2.pt"), seed=5
    )
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not decoded here")
    source = SourceFacts((48, 64), 9, Fraction(24), Fraction(1, 24))

    def key(*lora: str) -> str:
        config = RunConfig(size="64p", lora=lora)
        weights = files_identity(with_adapters({}, lora_specs(config)))
        job = RefineJob(clip, tmp_path / "out.mp4", "a fox")
        return file_job_key(config, job, plan_clip(source, config, CPU), weights)

    relative = key(f"{adapter.name}:0.5")
    assert key(f"{adapter}:0.5") == relative  # absolute path: the same run
    assert key(f"{adapter}:0.7") != relative  # another scale
    assert key(f"{other}:0.5") != relative  # another adapter
    assert key(f"{adapter}") != key()  # an adapter at all
