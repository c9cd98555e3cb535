"""VideoDiT block math: RoPE, time embeddings, zero-uncond path and the precision islands."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidrefine.config import DiTConfig
from vidrefine.models.dit import VideoDiT
from vidrefine.models.dit_blocks import FP32LayerNorm, qk_prologue, timestep_sinusoid
from vidrefine.models.rope import axis_dims, rope_rotation, rope_tables, rotate

TINY = DiTConfig(hidden_size=128, num_layers=2, num_heads=2, text_dim=32, time_embed_dim=64)
TINY2 = DiTConfig(
    hidden_size=128,
    num_layers=2,
    num_heads=2,
    text_dim=32,
    time_embed_dim=64,
    stage2_embeddings=True,
)
TEXT_LEN = 8


def make_model(cfg: DiTConfig, seed: int = 0) -> VideoDiT:
    torch.manual_seed(seed)
    model = VideoDiT(cfg).eval()
    with torch.no_grad():  # default init leaves some linears tiny; widen so every path matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def inputs(b: int = 1, t: int = 2, h: int = 4, w: int = 6, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 16, h, w, generator=gen)
    context = torch.randn(b, TEXT_LEN, 32, generator=gen)
    return x, context


# ---- RoPE -------------------------------------------------------------------------------------


def test_rope_axis_split_is_16_24_24_when_head_dim_is_64() -> None:
    assert axis_dims(64) == (16, 24, 24)


def pairwise_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Spec §3.5 written out: x * cos + rotate_half(x) * sin with (x0, x1) -> (-x1, x0)."""
    x = x.float()
    pairs = x.unflatten(-1, (-1, 2))
    swapped = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos + swapped * sin


def test_rope_leaves_text_tokens_untouched_when_rotating_video_tokens() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, TEXT_LEN + 24, 64, generator=gen)
    y = rotate(x, rope_rotation((2, 3, 4), 64, text_len=TEXT_LEN))
    assert torch.equal(y[:, :, :TEXT_LEN], x[:, :, :TEXT_LEN])
    # Video token (0, 0, 0) has angle 0; every other video token moves.
    assert torch.allclose(y[:, :, TEXT_LEN], x[:, :, TEXT_LEN])
    moved = (y[:, :, TEXT_LEN + 1 :] - x[:, :, TEXT_LEN + 1 :]).abs().amax(dim=(0, 1, 3))
    assert bool((moved > 1e-3).all())
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))


def test_rope_rotates_adjacent_pairs_when_applied_to_one_pair() -> None:
    # Only the first time frequency (angle = t * 1) is non-zero for a unit vector on dims 0, 1.
    x = torch.zeros(3, 64)
    x[:, 0] = 1.0
    y = rotate(x, rope_rotation((3, 1, 1), 64))
    for t in range(3):
        assert y[t, 0].item() == pytest.approx(math.cos(t), abs=1e-6)
        assert y[t, 1].item() == pytest.approx(math.sin(t), abs=1e-6)
    assert y[:, 2:].abs().max().item() == 0.0


def test_rope_dot_product_depends_only_on_position_difference_when_shifted_on_every_axis() -> None:
    grid = (4, 5, 6)
    rotation = rope_rotation(grid, 64)
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(64, generator=gen), torch.randn(64, generator=gen)

    def index(t: int, h: int, w: int) -> int:
        return (t * grid[1] + h) * grid[2] + w

    def score(i: int, j: int) -> float:
        qi = rotate(q[None], rotation[i : i + 1])[0]
        kj = rotate(k[None], rotation[j : j + 1])[0]
        return float(qi @ kj)

    base = score(index(0, 1, 2), index(2, 0, 4))
    shifted = score(index(1, 3, 3), index(3, 2, 5))  # both moved by (1, 2, 1)
    other = score(index(1, 3, 3), index(3, 2, 4))  # a different offset
    assert shifted == pytest.approx(base, abs=1e-4)
    assert abs(other - base) > 1e-3


def test_rope_tables_follow_the_grid_when_shapes_change_between_calls() -> None:
    model = make_model(TINY)
    x_big, context = inputs(t=3, h=6, w=8)
    x_small, _ = inputs(t=2, h=4, w=6)
    ts = torch.tensor([500.0])
    with torch.no_grad():
        first = model(x_small, ts, context)
        model(x_big, ts, context)
        again = model(x_small, ts, context)
    assert torch.equal(first, again)


# ---- time embedding -----------------------------------------------------------------------


def test_sinusoid_is_cos_first_when_checked_analytically() -> None:
    dim = 8
    emb = timestep_sinusoid(torch.tensor([0.0, 3.0]), dim)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    for k in range(4):
        f = math.exp(-math.log(10000.0) * k / 4)
        assert emb[1, k].item() == pytest.approx(math.cos(3.0 * f), abs=1e-6)
        assert emb[1, 4 + k].item() == pytest.approx(math.sin(3.0 * f), abs=1e-6)


def test_stage2_embedding_is_the_sum_of_three_mlps_when_frames_and_ref_step_are_given() -> None:
    model = make_model(TINY2)
    ts, frames, ref = torch.tensor([904.0]), torch.tensor([13.0]), torch.tensor([676.0])
    with torch.no_grad():
        emb = model.embed_time(ts, 1, 13, num_frames=frames, ref_step=ref)
        parts = model.time_embed(ts) + model.frames_embed(frames) + model.ref_step_embed(ref)
        default_frames = model.embed_time(ts, 1, 13, ref_step=ref)
    torch.testing.assert_close(emb, parts)
    torch.testing.assert_close(default_frames, emb)  # num_frames defaults to T


@pytest.mark.parametrize("change", ["ref_step", "num_frames"])
def test_stage2_output_changes_when_an_extra_embedding_input_changes(change: str) -> None:
    model = make_model(TINY2)
    x, context = inputs()
    ts = torch.tensor([500.0])
    kw = {"num_frames": torch.tensor([2.0]), "ref_step": torch.tensor([676.0])}
    with torch.no_grad():
        base = model(x, ts, context, **kw)
        kw[change] = kw[change] + 100.0
        moved = model(x, ts, context, **kw)
    assert (base - moved).abs().max().item() > 1e-3


def test_stage2_refuses_to_run_when_ref_step_is_missing() -> None:
    x, context = inputs()
    with pytest.raises(ValueError, match="ref_step"):
        make_model(TINY2)(x, torch.tensor([500.0]), context)


def test_stage1_refuses_stage2_inputs_when_given_a_ref_step() -> None:
    x, context = inputs()
    with pytest.raises(ValueError, match="stage I"):
        make_model(TINY)(x, torch.tensor([500.0]), context, ref_step=torch.tensor([676.0]))


# ---- conditioning paths ---------------------------------------------------------------------


def test_zero_context_still_reaches_the_video_when_text_proj_bias_changes() -> None:
    model = make_model(TINY)
    x, context = inputs()
    zeros = torch.zeros_like(context)
    ts = torch.tensor([500.0])
    with torch.no_grad():
        uncond = model(x, ts, zeros)
        cond = model(x, ts, context)
        model.text_proj.bias.add_(torch.randn(128, generator=torch.Generator().manual_seed(5)))
        uncond_moved = model(x, ts, zeros)
    assert torch.isfinite(uncond).all()
    assert (uncond - cond).abs().max().item() > 1e-3
    assert (uncond - uncond_moved).abs().max().item() > 1e-3


def test_batch_items_are_independent_when_run_together() -> None:
    model = make_model(TINY2)
    x, context = inputs(b=2)
    ts, ref = torch.tensor([904.0, 384.0]), torch.tensor([676.0, 676.0])
    with torch.no_grad():
        both = model(x, ts, context, ref_step=ref)
        one = model(x[1:], ts[1:], context[1:], ref_step=ref[1:])
    torch.testing.assert_close(both[1:], one, rtol=1e-5, atol=1e-5)


def test_model_holds_no_buffers_when_built() -> None:
    assert list(make_model(TINY2).buffers()) == []


def test_forward_refuses_a_latent_when_its_size_is_not_a_patch_multiple() -> None:
    x, context = inputs(h=5)
    with pytest.raises(ValueError, match="patch"):
        make_model(TINY)(x, torch.tensor([500.0]), context)


# ---- precision islands ----------------------------------------------------------------------


def test_sinusoid_is_fp32_when_timesteps_are_bf16() -> None:
    t = torch.tensor([904.0], dtype=torch.bfloat16)
    emb = timestep_sinusoid(t, 16)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb, timestep_sinusoid(torch.tensor([904.0]), 16), rtol=0, atol=0)


def test_layernorm_island_returns_fp32_when_autocast_is_on() -> None:
    norm = FP32LayerNorm(16, eps=1e-5).to(torch.bfloat16)
    x = torch.randn(2, 16).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = norm(x)
    outside = norm(x)
    assert inside.dtype == torch.float32
    assert outside.dtype == torch.bfloat16
    ref = F.layer_norm(x.float(), (16,), norm.weight.float(), norm.bias.float(), 1e-5)
    torch.testing.assert_close(inside, ref, rtol=0, atol=0)


def test_rope_island_is_fp32_when_inputs_are_bf16() -> None:
    cos, sin = rope_tables((2, 2, 2), 64)
    assert cos.dtype == sin.dtype == torch.float32
    assert rope_rotation((2, 2, 2), 64).dtype == torch.float32
    x = torch.randn(8, 64).to(torch.bfloat16)
    assert rotate(x, rope_rotation((2, 2, 2), 64)).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "autocast"])
def test_prologue_equals_the_split_rotate_concat_form_when_computed(dtype, autocast) -> None:
    # The original: qk-LN, then RoPE on the video tokens only (fp32), both parts cast, concat.
    gen = torch.Generator().manual_seed(3)
    grid, heads = (2, 3, 4), 3
    x = torch.randn(2, heads, TEXT_LEN + 24, 64, generator=gen).to(dtype)
    norm = FP32LayerNorm(64, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(64, generator=gen))
        norm.bias.copy_(0.1 * torch.randn(64, generator=gen))
    cos, sin = rope_tables(grid, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        normed = norm(x)
        text, video = normed[:, :, :TEXT_LEN], normed[:, :, TEXT_LEN:]
        want = torch.cat([text.to(dtype), pairwise_rope(video, cos, sin).to(dtype)], dim=2)
        got = qk_prologue(x, norm, rope_rotation(grid, 64, text_len=TEXT_LEN), dtype)
    assert got.dtype == want.dtype == dtype
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert torch.equal(got[:, :, :TEXT_LEN], want[:, :, :TEXT_LEN])  # text bit for bit


def test_attention_inputs_share_v_dtype_when_run_under_bf16_autocast(monkeypatch) -> None:
    seen: list[tuple[torch.dtype, ...]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = make_model(TINY2).to(torch.bfloat16)
    x, context = inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([904.0]), context, ref_step=torch.tensor([676.0]))
    assert seen and all(d == (torch.bfloat16,) * 3 for d in seen)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_bf16_model_tracks_fp32_model_when_run_without_autocast() -> None:
    model = make_model(TINY2)
    x, context = inputs()
    kw = {"ref_step": torch.tensor([676.0])}
    with torch.no_grad():
        ref = model(x, torch.tensor([500.0]), context, **kw)
        low = model.to(torch.bfloat16)(x, torch.tensor([500.0]), context, **kw)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()


def test_layernorm_epsilons_follow_the_original_when_built() -> None:
    # Too small for an output tolerance to catch (diffusers-oracle.md), so check them directly.
    model = make_model(TINY)
    block = model.blocks[0]
    assert block.norm1.eps == block.norm2.eps == 1e-5
    assert block.attn.q_norm.eps == block.attn.k_norm.eps == 1e-6
    assert model.final_norm.eps == 1e-5
    assert model.head.norm.eps == 1e-6


@pytest.mark.parametrize(
    ("cfg_name", "billions"), [("STAGE1_DIT", 5.57), ("STAGE2_DIT", 1.70)], ids=["stage1", "stage2"]
)
def test_parameter_count_matches_the_spec_when_built_at_full_size(
    cfg_name: str, billions: float
) -> None:
    import vidrefine.config as config

    with torch.device("meta"):
        model = VideoDiT(getattr(config, cfg_name))
    total = sum(p.numel() for p in model.parameters()) / 1e9
    assert total == pytest.approx(billions, abs=0.01)  # spec §3.9


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_sliced_mlp_and_prologue_give_the_same_bits_when_sequences_are_long(
    autocast, monkeypatch
) -> None:
    # 1080p runs 106k tokens through slices of CHUNK_TOKENS; here 37 makes uneven slices.
    import vidrefine.models.dit_blocks as blocks

    model = make_model(TINY2)
    x, context = inputs(t=2, h=6, w=8)
    ts, ref = torch.tensor([500.0]), torch.tensor([676.0])
    outs = []
    for chunk in (10**9, 37):
        monkeypatch.setattr(blocks, "CHUNK_TOKENS", chunk)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outs.append(model(x, ts, context, ref_step=ref))
    assert torch.equal(outs[0], outs[1])
