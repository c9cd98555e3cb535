"""Building blocks of the CogVideoX-style 3D causal VAE (flashvideo-spec §6.1).

Layout everywhere is (B, C, T, H, W). Causal state travels in a `CausalStep` value that the
encoder/decoder create per call: the cache of the previous temporal chunk comes in, the cache for
the next chunk goes out, and no module keeps state between calls (architecture rule 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

Cache = dict[str, torch.Tensor]  # causal-conv name -> last (k-1) time-padded input frames


@dataclass
class CausalStep:
    """What one temporal chunk's pass reads and writes besides activations.

    `first` is True for the chunk that starts the clip: its frame 0 stands alone when time is
    pooled or upsampled (the 1 + 4k frame grid). This equals the original's odd-length rule for
    every chunking it uses, including its `force_split` for two latent frames (spec §6.1, §6.5).
    """

    previous: Mapping[str, torch.Tensor]
    first: bool
    next: Cache = field(default_factory=dict)


def nonlinearity_(x: torch.Tensor) -> torch.Tensor:
    """SiLU (the VAE's only activation) in place, on a fresh tensor nobody else reads."""
    return F.silu(x, inplace=True)


GROUPS_PER_SLICE = 4  # GroupNorm's fp32 temporaries cover 4 of 32 groups at a time


class GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 and returned in the input dtype.

    Precision island: the original decodes in fp16 under bf16 autocast, where GroupNorm runs in
    fp32 (spec §9.4); statistics over millions of values are not safe in half precision.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise over (C/groups, T, H, W) of this chunk; (B, C, T, H, W) -> same.

        Half-precision input goes a few groups at a time (groups are independent), so the fp32
        copy and result exist for a slice of the channels, not all of them.
        """
        weight, bias = self.weight.float(), self.bias.float()
        if x.dtype == torch.float32:
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)
        out = torch.empty_like(x)
        per_group = x.shape[1] // self.num_groups
        for first in range(0, self.num_groups, GROUPS_PER_SLICE):
            groups = min(GROUPS_PER_SLICE, self.num_groups - first)
            c = slice(first * per_group, (first + groups) * per_group)
            part = F.group_norm(x[:, c].float(), groups, weight[c], bias[c], self.eps)
            out[:, c] = part  # cast to x's dtype on copy
        return out


class CausalConv3d(nn.Module):
    """Stride-1 3D conv that pads time causally and space with zeros (spec §6.1, pitfall 16).

    Time padding is the cached last k-1 frames of the previous chunk's padded input, or frame 0
    replicated k-1 times for the first chunk. `cache_key` is set by the owning encoder/decoder.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.time_pad = kernel_size - 1
        pad = kernel_size // 2
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=(0, pad, pad))
        self.cache_key = ""

    def forward(self, x: torch.Tensor, step: CausalStep) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T, H, W); records this chunk's tail in `step.next`."""
        if self.time_pad == 0:
            return self.conv(x)
        head = step.previous.get(self.cache_key)
        if head is None:
            head = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
        padded = torch.cat([head.to(x.dtype), x], dim=2)
        if x.is_contiguous(memory_format=torch.channels_last_3d) and x.shape[1] > 1:
            # keep an NDHWC run NDHWC (cat of an expanded head falls back to NCDHW)
            padded = padded.contiguous(memory_format=torch.channels_last_3d)
        # clone: a view would keep the whole padded chunk alive until the next call
        step.next[self.cache_key] = padded[:, :, -self.time_pad :].clone()
        return self.conv(padded)


class SpatialNorm3D(nn.Module):
    """Decoder norm conditioned on the latent: GN(f) * conv_y(zq) + conv_b(zq) (spec §6.1)."""

    def __init__(self, f_channels: int, zq_channels: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm_layer = GroupNorm(groups, f_channels, eps=eps)
        self.conv_y = CausalConv3d(zq_channels, f_channels, 1)
        self.conv_b = CausalConv3d(zq_channels, f_channels, 1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor, step: CausalStep) -> torch.Tensor:
        """F (B, C, T, H, W), zq (B, Z, t, h, w) resized by nearest to f's (T, H, W)."""
        zq = resize_latent(zq, f.shape[-3:], split_first=step.first)
        # in place on the fresh normalised tensor: same operations and order, fewer temporaries
        return self.norm_layer(f).mul_(self.conv_y(zq, step)).add_(self.conv_b(zq, step))


def resize_latent(
    zq: torch.Tensor, size_thw: torch.Size | tuple[int, int, int], *, split_first: bool
) -> torch.Tensor:
    """Nearest resize of zq to (T, H, W); frame 0 maps to frame 0 alone on the first chunk."""
    frames = size_thw[0]
    if split_first and frames > 1 and zq.shape[2] > 1:
        head = F.interpolate(zq[:, :, :1], size=(1, *size_thw[1:]), mode="nearest")
        rest = F.interpolate(zq[:, :, 1:], size=(frames - 1, *size_thw[1:]), mode="nearest")
        return torch.cat([head, rest], dim=2)
    return F.interpolate(zq, size=tuple(size_thw), mode="nearest")


class ResnetBlock(nn.Module):
    """norm -> SiLU -> conv3 -> norm -> SiLU -> conv3, plus a 1x1x1 `nin_shortcut` if widths differ.

    With `zq_channels` the norms are `SpatialNorm3D` (decoder), else plain GroupNorm (encoder).
    """

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, eps: float, zq_channels: int = 0
    ) -> None:
        super().__init__()
        self.spatial = zq_channels > 0
        if self.spatial:
            self.norm1 = SpatialNorm3D(in_channels, zq_channels, groups, eps)
            self.norm2 = SpatialNorm3D(out_channels, zq_channels, groups, eps)
        else:
            self.norm1 = GroupNorm(groups, in_channels, eps=eps)
            self.norm2 = GroupNorm(groups, out_channels, eps=eps)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.nin_shortcut = (
            nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def _norm(
        self, norm: nn.Module, x: torch.Tensor, zq: torch.Tensor | None, step: CausalStep
    ) -> torch.Tensor:
        return norm(x, zq, step) if self.spatial else norm(x)

    def forward(
        self, x: torch.Tensor, step: CausalStep, zq: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T, H, W).

        Each intermediate is rebound as soon as the next exists, so at most the input, one
        activation, the conv's padded input and its output are alive at once.
        """
        h = nonlinearity_(self._norm(self.norm1, x, zq, step))
        h = self.conv1(h, step)
        h = nonlinearity_(self._norm(self.norm2, h, zq, step))
        h = self.conv2(h, step)
        return h.add_(x if self.nin_shortcut is None else self.nin_shortcut(x))


class DownSample3D(nn.Module):
    """Optional time halving (pair average, frame 0 apart on the first chunk), then a stride-2
    3x3 conv per frame after zero padding right and bottom by one (spec §6.1, pitfall 16).
    """

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor, step: CausalStep) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T', H/2, W/2) with T' = 1 + (T-1)/2 first, T/2 later."""
        if self.compress_time and x.shape[2] > 1:
            x = halve_time(x, keep_first=step.first)
        frames = x.shape[2]
        x = F.pad(x, (0, 1, 0, 1))
        x = self.conv(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) c h w -> b c t h w", t=frames)


def halve_time(x: torch.Tensor, *, keep_first: bool) -> torch.Tensor:
    """Average frame pairs; with `keep_first` frame 0 passes through and the rest pair up."""
    head, rest = (x[:, :, :1], x[:, :, 1:]) if keep_first else (x[:, :, :0], x)
    if rest.shape[2] % 2:
        raise ValueError(
            f"cannot pair {rest.shape[2]} frames: chunks must hold 1 + 4k frames first, 4k later"
        )
    pooled = reduce(rest, "b c (t two) h w -> b c t h w", "mean", two=2)
    return torch.cat([head, pooled], dim=2)


class Upsample3D(nn.Module):
    """Nearest x2 in space (and in time when `compress_time`, frame 0 apart on the first chunk),
    then a 3x3 conv per frame (spec §6.1).
    """

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, step: CausalStep) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T', 2H, 2W) with T' = 1 + 2(T-1) first, 2T later."""
        if not self.compress_time:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        elif step.first:
            head = F.interpolate(x[:, :, :1], scale_factor=(1.0, 2.0, 2.0), mode="nearest")
            if x.shape[2] > 1:
                rest = F.interpolate(x[:, :, 1:], scale_factor=(2.0, 2.0, 2.0), mode="nearest")
                head = torch.cat([head, rest], dim=2)
            x = head
        else:
            x = F.interpolate(x, scale_factor=(2.0, 2.0, 2.0), mode="nearest")
        frames = x.shape[2]
        x = self.conv(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) c h w -> b c t h w", t=frames)
