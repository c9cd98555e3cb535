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
    """fp32 (cos, sin) pairs (text_len + T*H*W, head_dim/2, 2) for every token of a sequence.

    Row s, column j turns the pair (x_2j, x_2j+1) of token s by its angle: the same fp32 numbers
    as `rope_tables`. The first `text_len` rows are (1, 0), so text tokens come out unchanged bit
    for bit and q/k rotate in one pass without a split and a concat. Kept real (not complex64) so
    it can cross a `torch.compile` boundary.
    """
    cos, sin = rope_tables(grid_thw, head_dim, device=device)
    video = torch.stack([cos[:, 0::2], sin[:, 0::2]], dim=-1)  # pairs share one angle
    text = torch.zeros(text_len, head_dim // 2, 2, device=video.device)
    text[..., 0] = 1.0
    return torch.cat([text, video])


def rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Turn each adjacent pair of `x` (..., S, D) by `rotation` (S, D/2, 2) in fp32; fp32 out.

    (x0 + i x1)(cos + i sin) = (x0 cos - x1 sin) + i (x0 sin + x1 cos), the rotation of spec
    §3.5. Eager: one complex product (fewest passes over memory). Under `torch.compile` the
    same arithmetic on real tensors, which inductor fuses (it has no complex code generation).
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():
        x0, x1 = pairs.unbind(-1)
        cos, sin = rotation.unbind(-1)
        return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)
    turned = torch.view_as_complex(pairs.contiguous()) * torch.view_as_complex(rotation)
    return torch.view_as_real(turned).flatten(-2)


def rotate_(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """`rotate` in place on a contiguous fp32 `x` the caller owns (one full-size tensor less).

    Under `torch.compile` it is `rotate` (inductor fuses that and would not gain from this).
    """
    if torch.compiler.is_compiling() or x.dtype != torch.float32 or not x.is_contiguous():
        return rotate(x, rotation)
    torch.view_as_complex(x.unflatten(-1, (-1, 2))).mul_(torch.view_as_complex(rotation))
    return x
