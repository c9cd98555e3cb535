"""3D rotary embedding of the DiT's video tokens (flashvideo-spec §3.5, pitfalls 11 and 23).

Head dim 64 splits into time/height/width parts of 16/24/24 dims. Each part rotates adjacent pairs
(2j, 2j+1) by pos * 10000^(-2j/d) with `pos` the raw integer index on the actual latent grid: no
interpolation to a base grid (diffusers' CogVideoX pipeline rescales; the original does not).
Tables are computed for the grid of every call, never cached across shapes (pitfall 23).
"""

from __future__ import annotations

import torch

ROPE_THETA = 10000.0


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split `head_dim` into (time, height, width) parts: 64 -> (16, 24, 24) as the original."""
    dim_t = head_dim // 4
    dim_hw = head_dim // 8 * 3
    if dim_t + 2 * dim_hw != head_dim or dim_t % 2 or dim_hw % 2:
        raise ValueError(f"head dim {head_dim} cannot be split into t/h/w rotary parts")
    return dim_t, dim_hw, dim_hw


def _axis_angles(length: int, dim: int, device: torch.device | str | None) -> torch.Tensor:
    """Angles (length, dim) for one axis; every frequency repeated twice (interleaved pairs)."""
    # fp32 as the original: inv_freq_j = 1 / theta^(2j/d), angle = pos * inv_freq.
    inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, dim, 2, device=device).float() / dim))
    pos = torch.arange(length, device=device, dtype=torch.float32)
    angles = torch.outer(pos, inv_freq)  # (length, dim/2)
    return angles.repeat_interleave(2, dim=-1)  # (length, dim): a0 a0 a1 a1 ...


def rope_tables(
    grid_thw: tuple[int, int, int], head_dim: int, *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return fp32 (cos, sin), each (T*H*W, head_dim), for video tokens ordered (t, h, w).

    `grid_thw` is the token grid (latent frames, latent height / patch, latent width / patch);
    width varies fastest, matching the patch embedding's token order.
    """
    t, h, w = grid_thw
    dim_t, dim_h, dim_w = axis_dims(head_dim)
    a_t = _axis_angles(t, dim_t, device)[:, None, None, :].expand(t, h, w, dim_t)
    a_h = _axis_angles(h, dim_h, device)[None, :, None, :].expand(t, h, w, dim_h)
    a_w = _axis_angles(w, dim_w, device)[None, None, :, :].expand(t, h, w, dim_w)
    angles = torch.cat([a_t, a_h, a_w], dim=-1).reshape(t * h * w, head_dim)
    return angles.cos(), angles.sin()


def rope_rotation(
    grid_thw: tuple[int, int, int],
    head_dim: int,
    *,
    text_len: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Complex64 rotations (text_len + T*H*W, head_dim/2) for every token of a joint sequence.

    Row s, column j turns the pair (x_2j, x_2j+1) of token s by its angle: cos + i sin from
    `rope_tables` (the same fp32 numbers). The first `text_len` rows are 1 + 0i, so text tokens
    come out unchanged bit for bit and q/k rotate in one pass without a split and a concat.
    """
    cos, sin = rope_tables(grid_thw, head_dim, device=device)
    video = torch.complex(cos[:, 0::2], sin[:, 0::2])  # pairs share an angle: one column each
    text = torch.ones(text_len, head_dim // 2, dtype=video.dtype, device=video.device)
    return torch.cat([text, video])


def rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Turn each adjacent pair of `x` (..., S, D) by `rotation` (S, D/2) in fp32; returns fp32.

    (x0 + i x1)(cos + i sin) = (x0 cos - x1 sin) + i (x0 sin + x1 cos): the rotation of spec
    §3.5, as one complex product instead of a pair swap, two products and a sum.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2)
