"""Issue 23 item 5: a `vidrefine tune` adapter exported in kohya's LoRA convention
(`vidrefine export kohya`), read back the way kohya-format loaders (ComfyUI wrappers) merge it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import torch
from lora_fixtures import TARGETS, write_adapter
from safetensors import safe_open
from safetensors.torch import load_file
from tiny_runs import run_cli

from vidrefine.checkpoints.dit import load_dit
from vidrefine.diffusers.export import load_transformer
from vidrefine.diffusers.names import diffusers_key
from vidrefine.errors import ExitCode
from vidrefine.train.lora import apply_loras

EMBEDDING = "frames_embed.fc2"


def write_tuned_adapter(path: Path, base: torch.nn.Module) -> Path:
    """A rank-4, alpha-8 adapter on two linears plus a whole-trained embedding layer."""
    return write_adapter(path, base, spread=0.2, alpha=8.0, whole=(EMBEDDING,))


def walk(model: torch.nn.Module, parts: list[str]) -> torch.nn.Module:
    """The module a kohya name points at: the loaders' greedy join of `_`-separated parts."""
    module, pending = model, ""
    for part in parts:
        pending = f"{pending}_{part}" if pending else part
        if hasattr(module, pending):
            module, pending = getattr(module, pending), ""
    assert not pending, f"no module for {parts}"
    return module


@torch.no_grad()
def merge_kohya(model: torch.nn.Module, tensors: dict[str, torch.Tensor], strength: float) -> None:
    """W += strength * alpha / r * up @ down; W += strength * diff; b += strength * diff_b."""
    groups: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in tensors.items():
        stem, _, element = key.partition(".")
        groups[stem][element] = value
    for stem, elements in groups.items():
        assert stem.startswith("lora_unet_")
        module = walk(model, stem.removeprefix("lora_unet_").split("_"))
        if "lora_up.weight" in elements:
            up, down = elements["lora_up.weight"], elements["lora_down.weight"]
            scale = elements["alpha"].item() / down.shape[0]
            module.weight += strength * scale * (up @ down)
        if "diff" in elements:
            module.weight += strength * elements["diff"]
        if "diff_b" in elements:
            module.bias += strength * elements["diff_b"]


@pytest.fixture(scope="module")
def adapter(stage2_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = load_dit(stage2_weights / "stage2.pt", stage=2)
    return write_tuned_adapter(tmp_path_factory.mktemp("kohya") / "adapter.safetensors", base)


def one_error(text: str) -> bool:
    """The command said one error line (CliRunner may echo stderr twice) and no traceback."""
    errors = {line for line in text.splitlines() if line.startswith("vidrefine: error:")}
    return len(errors) == 1 and "Traceback" not in text and "bug" not in text


def export(adapter: Path, out: Path, weights: Path, *extra: str) -> tuple[int, str]:
    return run_cli(
        ["export", "kohya", str(adapter), "-o", str(out), "--weights", str(weights), *extra]
    )


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_kohya_file_merged_by_a_kohya_loader_is_tunes_own_merge_when_exported(
    adapter: Path, stage2_weights: Path, tmp_path: Path, strength: float
) -> None:
    out = tmp_path / "lora.safetensors"
    code, output = export(adapter.parent, out, stage2_weights)  # the run folder
    assert code == 0, output
    tensors = load_file(str(out))
    stem = "lora_unet_transformer_blocks_0_attn_qkv"
    assert {f"{stem}.lora_down.weight", f"{stem}.lora_up.weight", f"{stem}.alpha"} <= set(tensors)
    assert {"lora_unet_frames_embed_fc2.diff", "lora_unet_frames_embed_fc2.diff_b"} <= set(tensors)
    assert tensors[f"{stem}.lora_down.weight"].shape[0] == 4
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["ss_network_dim"] == "4"
        assert f.metadata()["ss_network_alpha"] == "8"

    transformer = load_transformer(stage2_weights / "stage2.pt")
    merge_kohya(transformer, tensors, strength)
    tuned = apply_loras(load_dit(stage2_weights / "stage2.pt", stage=2), [(adapter, strength)])
    base = load_dit(stage2_weights / "stage2.pt", stage=2).state_dict()
    got = transformer.state_dict()
    changed = 0
    for key, expected in tuned.state_dict().items():
        assert (got[diffusers_key(key)] - expected).abs().max() <= 1e-5, key
        changed += not torch.equal(expected, base[key])
    assert changed == len(TARGETS) + 2  # two linears, the embedding's weight and bias


def test_kohya_export_refuses_without_writing_when_the_adapter_or_output_is_wrong(
    adapter: Path, stage2_weights: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "mine.safetensors"
    existing.write_bytes(b"the user's file")
    code, output = export(adapter, existing, stage2_weights)
    assert code == ExitCode.OUTPUT_EXISTS and one_error(output), output
    assert existing.read_bytes() == b"the user's file"

    other = load_dit(stage2_weights / "stage2.pt", stage=2)
    with torch.no_grad():
        other.blocks[0].attn.qkv.weight.add_(0.5)
    foreign = write_tuned_adapter(tmp_path / "foreign.safetensors", other)
    out = tmp_path / "lora.safetensors"
    code, output = export(foreign, out, stage2_weights)
    assert code == ExitCode.BAD_CHECKPOINT and "another base model" in output, output
    assert one_error(output), output
    code, output = export(adapter, tmp_path / "lora.pt", stage2_weights)
    assert code == ExitCode.BAD_INPUT and ".safetensors" in output and one_error(output), output
    code, output = export(stage2_weights / "stage2.pt", out, stage2_weights)
    assert code == ExitCode.BAD_CHECKPOINT and "not a vidrefine LoRA adapter" in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.safetensors", "mine.safetensors"]
