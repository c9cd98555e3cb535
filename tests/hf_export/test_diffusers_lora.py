"""Adapters of vidrefine's DiT (peft's, `vidrefine tune`'s) in the diffusers pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dit_fixtures import TINY_TEXT_DIM, TINY_TEXT_LEN, official_dit_tensors, write_official

peft = pytest.importorskip("peft")

from safetensors import safe_open  # noqa: E402

from vidrefine.checkpoints import load_dit  # noqa: E402
from vidrefine.diffusers.export import load_transformer  # noqa: E402
from vidrefine.diffusers.lora import load_tuned_adapter, save_diffusers_lora  # noqa: E402
from vidrefine.diffusers.pipeline import FlashVideoRefinePipeline  # noqa: E402
from vidrefine.diffusers.scheduler import FlashVideoFlowScheduler  # noqa: E402


def tuned_dit(checkpoint: Path, config) -> torch.nn.Module:
    """VideoDiT with a peft adapter whose B matrices are not zero (a trained adapter)."""
    dit = peft.inject_adapter_in_model(config, load_dit(checkpoint).eval())
    gen = torch.Generator().manual_seed(1)
    for name, parameter in dit.named_parameters():
        if "lora_B" in name:
            parameter.data = 0.1 * torch.randn(parameter.shape, generator=gen)
    return dit


def test_vidrefine_adapter_loads_into_the_pipeline_when_saved_in_diffusers_keys(
    tmp_path: Path,
) -> None:
    checkpoint = write_official(tmp_path / "stage2.pt", official_dit_tensors(seed=4))
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "out", "fc1", "fc2"])
    dit = tuned_dit(checkpoint, config)
    adapter = peft.get_peft_model_state_dict(dit)
    folder = save_diffusers_lora(tmp_path / "lora", adapter, config.to_dict())
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), "pt") as f:
        keys = set(f.keys())  # noqa: SIM118
    assert "transformer.transformer_blocks.1.attn.qkv.lora_A.weight" in keys
    assert len(keys) == len(adapter)

    transformer = load_transformer(checkpoint)
    pipe = FlashVideoRefinePipeline(None, None, None, transformer, FlashVideoFlowScheduler())
    pipe.load_lora_weights(folder)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 16, 4, 6, generator=gen)
    context = torch.randn(1, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=gen)
    t, frames, ref = torch.tensor([784.0]), torch.tensor([3.0]), torch.tensor([676.0])
    with torch.no_grad():
        expected = dit(x, t, context, num_frames=frames, ref_step=ref)
        got = transformer(x, context, t, frames, ref).sample
        off = transformer(x, context, t, frames, ref, attention_kwargs={"scale": 0.0}).sample
        base = load_dit(checkpoint).eval()(x, t, context, num_frames=frames, ref_step=ref)
    assert (got - expected).abs().max() <= 1e-5  # alpha 8 / rank 4 kept: a scale of 2
    assert (got - base).abs().max() > 0.1  # the adapter does something
    assert (off - base).abs().max() <= 1e-5  # scale 0 is the base model


def test_tune_adapter_loads_into_the_pipeline_when_read_from_its_file(tmp_path: Path) -> None:
    from vidrefine.errors import BadCheckpoint
    from vidrefine.train.lora import AdapterConfig, apply_lora, save_adapter, weights_fingerprint

    checkpoint = write_official(tmp_path / "stage2.pt", official_dit_tensors(seed=4))
    base = load_dit(checkpoint).eval()
    gen = torch.Generator().manual_seed(3)
    pairs = {}
    for name in ("blocks.0.attn.qkv", "blocks.1.mlp.fc2"):
        weight = base.get_submodule(name).weight
        a = 0.1 * torch.randn(4, weight.shape[1], generator=gen)
        pairs[name] = (a, 0.1 * torch.randn(weight.shape[0], 4, generator=gen))
    tuned_embedding = base.frames_embed.fc2.weight + 0.05 * torch.randn(
        base.frames_embed.fc2.weight.shape, generator=gen
    )
    config = AdapterConfig(
        r=4,
        lora_alpha=8.0,
        target_modules=sorted(pairs),
        modules_to_save=["frames_embed"],
        base_model_fingerprint=weights_fingerprint(base),
    )
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, pairs, {"frames_embed.fc2.weight": tuned_embedding}, config)

    transformer = load_transformer(checkpoint)
    pipe = FlashVideoRefinePipeline(None, None, None, transformer, FlashVideoFlowScheduler())
    assert load_tuned_adapter(pipe, path) == "adapter"
    assert "transformer_blocks.0.attn.qkv.lora_A.adapter.weight" in dict(
        transformer.named_parameters()
    )
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 16, 4, 6, generator=gen)
    context = torch.randn(1, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=gen)
    t, frames, ref = torch.tensor([784.0]), torch.tensor([3.0]), torch.tensor([676.0])
    tuned = apply_lora(load_dit(checkpoint).eval(), path)  # tune's own merge
    with torch.no_grad():
        expected = tuned(x, t, context, num_frames=frames, ref_step=ref)
        got = transformer(x, context, t, frames, ref).sample
        plain = base(x, t, context, num_frames=frames, ref_step=ref)
    assert (got - expected).abs().max() <= 1e-5 < (got - plain).abs().max()

    other = write_official(tmp_path / "other.pt", official_dit_tensors(seed=5))
    foreign = FlashVideoRefinePipeline(None, None, None, load_transformer(other), None)
    with pytest.raises(BadCheckpoint, match="trained on another base model"):
        load_tuned_adapter(foreign, path)
