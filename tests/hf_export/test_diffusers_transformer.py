"""FlashVideoTransformer3DModel is VideoDiT's math under diffusers' model classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dit_fixtures import TINY_TEXT_DIM, TINY_TEXT_LEN, official_dit_tensors, write_official

from vidrefine.checkpoints import load_dit
from vidrefine.diffusers.export import load_transformer
from vidrefine.diffusers.transformer import FlashVideoTransformer3DModel


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dit") / "stage2.pt"
    return write_official(path, official_dit_tensors(seed=3))


def inputs(batch: int = 2):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(batch, 3, 16, 6, 10, generator=gen)  # T > 1, H != W
    context = torch.randn(batch, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=gen)
    timestep = torch.tensor([904.0, 384.0][:batch])
    return x, context, timestep, torch.full((batch,), 3.0), torch.full((batch,), 676.0)


def test_transformer_equals_videodit_bit_for_bit_when_given_the_same_weights(checkpoint) -> None:
    ours = load_dit(checkpoint).eval()
    model = load_transformer(checkpoint)
    for name, tensor in ours.state_dict().items():  # the very tensors, renamed
        other = model.state_dict()[name.replace("blocks.", "transformer_blocks.", 1)]
        assert other.data_ptr() != tensor.data_ptr() and torch.equal(other, tensor)
    x, context, timestep, frames, ref = inputs()
    with torch.no_grad():
        expected = ours(x, timestep, context, num_frames=frames, ref_step=ref)
        got = model(x, context, timestep, num_frames=frames, ref_step=ref).sample
        tupled = model(x, context, timestep, frames, ref, return_dict=False)[0]
    assert expected.abs().max() > 0.1
    assert torch.equal(got, expected) and torch.equal(tupled, expected)  # same arithmetic


def test_transformer_round_trips_when_saved_and_loaded_by_diffusers(checkpoint, tmp_path) -> None:
    model = load_transformer(checkpoint)
    model.save_pretrained(tmp_path / "transformer")
    loaded = FlashVideoTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    fields = {k: v for k, v in loaded.config.items() if not k.startswith("_")}
    assert fields == {k: v for k, v in model.config.items() if not k.startswith("_")}
    assert loaded.config.num_attention_heads == 2 and loaded.config.stage2_embeddings
    assert sorted(p.name for p in (tmp_path / "transformer").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    saved, restored = model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    x, context, timestep, frames, ref = inputs()
    with torch.no_grad():
        a = model(x, context, timestep, num_frames=frames, ref_step=ref).sample
        b = loaded(x, context, timestep, num_frames=frames, ref_step=ref).sample
    # same weights; memory-mapped tensors may take other CPU kernels: fp32 rounding only
    assert (a - b).abs().max() <= 1e-5


def test_transformer_is_named_as_diffusers_transformers_when_listed() -> None:
    with torch.device("meta"):
        model = FlashVideoTransformer3DModel(num_attention_heads=2, num_layers=2, text_embed_dim=8)
    names = list(model.state_dict())
    assert "transformer_blocks.1.attn.qkv.weight" in names
    assert not any(n.startswith("blocks.") for n in names)
    assert {"frames_embed.fc1.weight", "ref_step_embed.fc2.bias"} <= set(names)
    # one set of parameters: the VideoDiT inside holds no copy of its own
    assert len(names) == len({id(p) for p in model.parameters()})
