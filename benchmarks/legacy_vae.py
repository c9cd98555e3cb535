"""The VAE's operators as they ran before issue 21, to compare old and new side by side.

`legacy_vae(vae)` switches every block of a `CausalVideoVAE` to the forwards below for the
duration of a `with` block (same parameters, no copy), and back afterwards. They are the
previous `vidrefine/models/vae_blocks.py` forwards verbatim: GroupNorm's half precision a few
groups at a time in fp32 copies on every device, the causal conv's `torch.cat` time padding
(plus a channels-last copy for NDHWC input), SpatialNorm3D's 1x1x1 convs after upsampling the
latent to full resolution, `F.pad` / `F.interpolate` / `torch.cat` around the per-frame 2D convs.
Used by the benchmarks and by tests/models/test_vae_kernels.py (new == old).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange, reduce

from vidrefine.models import vae_blocks
from vidrefine.models.vae_blocks import CausalStep, nonlinearity_, resize_latent


class LegacyGroupNorm(vae_blocks.GroupNorm):
    """GroupNorm in fp32 slices of 4 groups for every half-precision input, CUDA too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sliced(x)

    def norm_silu(self, x, _zq, _step):
        return nonlinearity_(self(x))


class LegacyCausalConv3d(vae_blocks.CausalConv3d):
    """Time padding by torch.cat (then channels-last again for NDHWC), one nn.Conv3d call."""

    def forward(self, x: torch.Tensor, step: CausalStep) -> torch.Tensor:
        if self.time_pad == 0:
            return self.conv(x)
        head = step.previous.get(self.cache_key)
        if head is None:
            head = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
        padded = torch.cat([head.to(x.dtype), x], dim=2)
        if x.is_contiguous(memory_format=torch.channels_last_3d) and x.shape[1] > 1:
            padded = padded.contiguous(memory_format=torch.channels_last_3d)
        step.next[self.cache_key] = padded[:, :, -self.time_pad :].clone()
        return self.conv(padded)


class LegacySpatialNorm3D(vae_blocks.SpatialNorm3D):
    """zq upsampled to f's size first, then the two 1x1x1 convs at full resolution."""

    def forward(self, f: torch.Tensor, zq: torch.Tensor, step: CausalStep) -> torch.Tensor:
        zq = resize_latent(zq, f.shape[-3:], split_first=step.first)
        return self.norm_layer(f).mul_(self.conv_y(zq, step)).add_(self.conv_b(zq, step))

    def norm_silu(self, f, zq, step):
        return nonlinearity_(self(f, zq, step))


class LegacyResnetBlock(vae_blocks.ResnetBlock):
    """norm, SiLU and conv as separate calls; nin_shortcut through nn.Conv3d."""

    def _norm(self, norm, x, zq, step):
        return norm(x, zq, step) if self.spatial else norm(x)

    def forward(self, x, step, zq=None):
        h = nonlinearity_(self._norm(self.norm1, x, zq, step))
        h = self.conv1(h, step)
        h = nonlinearity_(self._norm(self.norm2, h, zq, step))
        h = self.conv2(h, step)
        return h.add_(x if self.nin_shortcut is None else self.nin_shortcut(x))


def legacy_halve_time(x: torch.Tensor, *, keep_first: bool) -> torch.Tensor:
    """Pair means by einops.reduce, frame 0 concatenated in front."""
    head, rest = (x[:, :, :1], x[:, :, 1:]) if keep_first else (x[:, :, :0], x)
    pooled = reduce(rest, "b c (t two) h w -> b c t h w", "mean", two=2)
    return torch.cat([head, pooled], dim=2)


class LegacyDownSample3D(vae_blocks.DownSample3D):
    """Time pooling with torch.cat, F.pad, then the per-frame conv through a rearranged copy."""

    def forward(self, x, step):
        if self.compress_time and x.shape[2] > 1:
            x = legacy_halve_time(x, keep_first=step.first)
        frames = x.shape[2]
        x = F.pad(x, (0, 1, 0, 1))
        x = self.conv(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) c h w -> b c t h w", t=frames)


class LegacyUpsample3D(vae_blocks.Upsample3D):
    """F.interpolate (frame 0 apart, joined by torch.cat), then the per-frame conv."""

    def forward(self, x, step):
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


_LEGACY = {
    vae_blocks.GroupNorm: LegacyGroupNorm,
    vae_blocks.CausalConv3d: LegacyCausalConv3d,
    vae_blocks.SpatialNorm3D: LegacySpatialNorm3D,
    vae_blocks.ResnetBlock: LegacyResnetBlock,
    vae_blocks.DownSample3D: LegacyDownSample3D,
    vae_blocks.Upsample3D: LegacyUpsample3D,
}


@contextlib.contextmanager
def legacy_vae(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run `model`'s blocks with the pre-issue-21 forwards inside the block (kernels ignored)."""
    swapped = []
    for module in model.modules():
        legacy = _LEGACY.get(type(module))
        if legacy is not None:
            swapped.append((module, type(module)))
            module.__class__ = legacy
    try:
        yield model
    finally:
        for module, cls in swapped:
            module.__class__ = cls
