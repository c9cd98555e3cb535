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


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Map each adjacent pair (x0, x1) of the last dim to (-x1, x0)."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., D/2, 2)
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` (..., N, D) by tables (N, D) in fp32; the result stays fp32 (a precision island).

    Callers cast the result to the attention dtype, as the original casts q and k to v's dtype.
    """
    x = x.float()
    return x * cos + rotate_pairs(x) * sin


def rotate_video_tokens(
    x: torch.Tensor, text_len: int, cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """RoPE on tokens >= `text_len` of q or k (B, heads, S, d); text tokens pass unrotated.

    Both parts are cast to `dtype` (v's dtype), as the original casts q and k before attention.
    """
    text, video = x[:, :, :text_len], x[:, :, text_len:]
    return torch.cat([text.to(dtype), apply_rope(video, cos, sin).to(dtype)], dim=2)
