"""Same random weights in diffusers' CogVideoXTransformer3DModel and in our VideoDiT.

The diffusers side is configured and keyed from diffusers-oracle.md; the RoPE tables and the
stage-II extra embeddings are built here from the spec's formulas, not from our code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

diffusers = pytest.importorskip("diffusers")

from dit_fixtures import (  # noqa: E402
    HEAD_DIM,
    TINY_HIDDEN,
    TINY_LAYERS,
    TINY_TEXT_DIM,
    TINY_TEXT_LEN,
    official_dit_tensors,
    write_official,
)

from vidrefine.checkpoints import convert_dit, load_dit  # noqa: E402


def diffusers_model(official: dict[str, torch.Tensor]):
    from diffusers import CogVideoXTransformer3DModel

    model = CogVideoXTransformer3DModel(
        num_attention_heads=TINY_HIDDEN // HEAD_DIM,
        attention_head_dim=HEAD_DIM,
        in_channels=16,
        out_channels=16,
        time_embed_dim=512,
        text_embed_dim=TINY_TEXT_DIM,
        num_layers=TINY_LAYERS,
        patch_size=2,
        max_text_seq_length=TINY_TEXT_LEN,
        activation_fn="gelu-approximate",
        timestep_activation_fn="silu",
        norm_elementwise_affine=True,
        norm_eps=1e-5,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False,
    )
    model.norm_out.norm.eps = 1e-6  # the original's norm_final eps
    model.load_state_dict(diffusers_state(official), strict=True)
    return model.eval()


def diffusers_state(o: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names -> diffusers names (mapping described in diffusers-oracle.md)."""
    s: dict[str, torch.Tensor] = {}

    def copy(dst: str, src: str) -> None:
        s[f"{dst}.weight"] = o[f"{src}.weight"]
        s[f"{dst}.bias"] = o[f"{src}.bias"]

    copy("patch_embed.proj", "mixins.patch_embed.proj")
    copy("patch_embed.text_proj", "mixins.patch_embed.text_proj")
    copy("time_embedding.linear_1", "time_embed.0")
    copy("time_embedding.linear_2", "time_embed.2")
    for layer in range(TINY_LAYERS):
        d, t = f"transformer_blocks.{layer}", f"transformer.layers.{layer}"
        copy(f"{d}.norm1.norm", f"{t}.input_layernorm")
        copy(f"{d}.norm2.norm", f"{t}.post_attention_layernorm")
        for part, name in zip(("weight", "bias"), ("weight", "bias"), strict=True):
            q, k, v = o[f"{t}.attention.query_key_value.{part}"].chunk(3, dim=0)
            s[f"{d}.attn1.to_q.{name}"], s[f"{d}.attn1.to_k.{name}"] = q, k
            s[f"{d}.attn1.to_v.{name}"] = v
            chunks = o[f"mixins.adaln_layer.adaLN_modulations.{layer}.1.{part}"].chunk(12, dim=0)
            s[f"{d}.norm1.linear.{name}"] = torch.cat([chunks[i] for i in (0, 1, 2, 6, 7, 8)])
            s[f"{d}.norm2.linear.{name}"] = torch.cat([chunks[i] for i in (3, 4, 5, 9, 10, 11)])
        copy(f"{d}.attn1.norm_q", f"mixins.adaln_layer.query_layernorm_list.{layer}")
        copy(f"{d}.attn1.norm_k", f"mixins.adaln_layer.key_layernorm_list.{layer}")
        copy(f"{d}.attn1.to_out.0", f"{t}.attention.dense")
        copy(f"{d}.ff.net.0.proj", f"{t}.mlp.dense_h_to_4h")
        copy(f"{d}.ff.net.2", f"{t}.mlp.dense_4h_to_h")
    copy("norm_final", "transformer.final_layernorm")
    copy("norm_out.norm", "mixins.final_layer.norm_final")
    copy("norm_out.linear", "mixins.final_layer.adaLN_modulation.1")
    copy("proj_out", "mixins.final_layer.linear")
    return s


def raw_rope(frames: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of shape (frames*height*width, 64): raw integer positions, 16/24/24 split."""
    grid = torch.meshgrid(
        torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij"
    )
    angles = []
    for pos, dim in zip(grid, (16, 24, 24), strict=True):
        inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles.append(pos.reshape(-1, 1).double() * inv_freq)
    angles = torch.cat(angles, dim=-1).repeat_interleave(2, dim=-1)
    return angles.cos().float(), angles.sin().float()


def add_stage2_hook(model, official, num_frames: torch.Tensor, ref_step: torch.Tensor):
    """Add the two stage-II MLP embeddings to diffusers' time embedding output (spec §3.3)."""
    from diffusers.models.embeddings import get_timestep_embedding

    def mlp(name: str, value: torch.Tensor) -> torch.Tensor:
        sinus = get_timestep_embedding(
            value, TINY_HIDDEN, flip_sin_to_cos=True, downscale_freq_shift=0
        )
        h = F.silu(F.linear(sinus, official[f"{name}.0.weight"], official[f"{name}.0.bias"]))
        return F.linear(h, official[f"{name}.2.weight"], official[f"{name}.2.bias"])

    def hook(_module, _inputs, output):
        return (
            output
            + mlp("time_size_embedding", num_frames)
            + mlp("ref_step_time_embedding", ref_step)
        )

    return model.time_embedding.register_forward_hook(hook)


@pytest.mark.parametrize("source", ["pt", "converted"])
@pytest.mark.parametrize("stage2", [True, False], ids=["stage2", "stage1"])
def test_output_matches_diffusers_when_weights_are_identical(
    tmp_path: Path, stage2: bool, source: str
) -> None:
    official = official_dit_tensors(stage2=stage2, seed=3)
    path = write_official(tmp_path / "stage.pt", official)
    if source == "converted":
        path = tmp_path / "stage.safetensors"
        convert_dit(tmp_path / "stage.pt", path)
    ours = load_dit(path).eval()

    gen = torch.Generator().manual_seed(7)
    b, t, h, w = 2, 3, 6, 10  # H != W, T > 1: token grid 3 x 3 x 5
    x = torch.randn(b, t, 16, h, w, generator=gen)
    context = torch.randn(b, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=gen)
    timestep = torch.tensor([904.0, 384.0])
    num_frames, ref_step = torch.full((b,), float(t)), torch.full((b,), 676.0)

    reference = diffusers_model(official)
    if stage2:
        add_stage2_hook(reference, official, num_frames, ref_step)
    extra = {"num_frames": num_frames, "ref_step": ref_step} if stage2 else {}
    with torch.no_grad():
        expected = reference(
            x, context, timestep, image_rotary_emb=raw_rope(t, h // 2, w // 2), return_dict=False
        )[0]
        got = ours(x, timestep, context, **extra)
    assert got.shape == expected.shape == x.shape
    scale = expected.abs().max().item()
    assert scale > 0.1
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, scale)


def test_parity_check_detects_swapped_rope_axes_when_height_and_width_are_exchanged(
    tmp_path: Path,
) -> None:
    official = official_dit_tensors(stage2=False, seed=3)
    ours = load_dit(write_official(tmp_path / "s.pt", official)).eval()
    reference = diffusers_model(official)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 2, 16, 6, 10, generator=gen)
    context = torch.randn(1, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=gen)
    cos, sin = raw_rope(2, 5, 3)  # the wrong grid (width and height exchanged)
    with torch.no_grad():
        wrong = reference(x, context, torch.tensor([500.0]), image_rotary_emb=(cos, sin))[0]
        got = ours(x, torch.tensor([500.0]), context)
    assert (got - wrong).abs().max().item() > 1e-3
