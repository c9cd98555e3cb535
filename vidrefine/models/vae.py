"""CogVideoX 3D causal VAE (flashvideo-spec §6): encoder, decoder, posterior helpers.

Pure math: config in, tensors out. Parameter names reproduce the official `3d-vae.pt` keys
(spec §8.3), so its state_dict loads without renaming. Temporal chunking is driven from outside:
`encode`/`decode` take the causal cache of the previous chunk and return the next one.
"""

from __future__ import annotations

import torch
from torch import nn

from vidrefine.config import VAEConfig
from vidrefine.models.vae_blocks import (
    Cache,
    CausalConv3d,
    CausalStep,
    DownSample3D,
    GroupNorm,
    ResnetBlock,
    SpatialNorm3D,
    Upsample3D,
    norm_silu,
)
from vidrefine.models.vae_conv import PLAIN, VAEKernels

LOGVAR_RANGE = (-30.0, 20.0)  # posterior log-variance clamp (spec §6.2)


def _name_caches(root: nn.Module) -> None:
    """Give every causal conv its module path as cache key (e.g. 'down.0.block.1.conv1')."""
    for name, module in root.named_modules():
        if isinstance(module, CausalConv3d):
            module.cache_key = name


class Level(nn.Module):
    """One resolution level: `block` resnets, then an optional `downsample` or `upsample`."""

    def __init__(self, blocks: list[ResnetBlock]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)


class Mid(nn.Module):
    """Two resnets at the lowest resolution (`block_1`, `block_2`; no attention)."""

    def __init__(self, channels: int, cfg: VAEConfig, zq_channels: int = 0) -> None:
        super().__init__()
        g, eps = cfg.norm_groups, cfg.norm_eps
        self.block_1 = ResnetBlock(channels, channels, g, eps, zq_channels)
        self.block_2 = ResnetBlock(channels, channels, g, eps, zq_channels)

    def forward(
        self, x: torch.Tensor, step: CausalStep, zq: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, T, h, w) -> same."""
        return self.block_2(self.block_1(x, step, zq), step, zq)


class Encoder(nn.Module):
    """Pixels (B, 3, T, H, W) -> moments (B, 2*latent, 1 + (T-1)/4, H/8, W/8) (spec §6.2)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch, g, eps = cfg.block_out_channels, cfg.norm_groups, cfg.norm_eps
        self.conv_in = CausalConv3d(cfg.in_channels, ch[0], 3)
        self.down = nn.ModuleList()
        previous = ch[0]
        for i, width in enumerate(ch):
            blocks = [
                ResnetBlock(previous if j == 0 else width, width, g, eps)
                for j in range(cfg.layers_per_block)
            ]
            level = Level(blocks)
            if i < len(ch) - 1:
                level.downsample = DownSample3D(width, compress_time=i < cfg.time_compress_levels)
            self.down.append(level)
            previous = width
        self.mid = Mid(ch[-1], cfg)
        self.norm_out = GroupNorm(g, ch[-1], eps=eps)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, 3)
        _name_caches(self)

    def forward(self, x: torch.Tensor, step: CausalStep) -> torch.Tensor:
        """Run one temporal chunk; `step` carries the causal cache in and out."""
        h = self.conv_in(x, step)
        for level in self.down:
            for block in level.block:
                h = block(h, step)
            if hasattr(level, "downsample"):
                h = level.downsample(h, step)
        h = self.mid(h, step)
        return self.conv_out(norm_silu(self.norm_out, h, None, step), step)


class Decoder(nn.Module):
    """Latent (B, latent, T', h, w) -> pixels (B, 3, 1 + 4(T'-1), 8h, 8w) (spec §6.3).

    `up` is indexed by level as in the official file; execution runs from the last level down.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch, g, eps, z = cfg.block_out_channels, cfg.norm_groups, cfg.norm_eps, cfg.latent_channels
        levels = len(ch)
        self.conv_in = CausalConv3d(z, ch[-1], 3)
        self.mid = Mid(ch[-1], cfg, zq_channels=z)
        self.up = nn.ModuleList()
        for i, width in enumerate(ch):
            previous = ch[i + 1] if i < levels - 1 else ch[-1]
            blocks = [
                ResnetBlock(previous if j == 0 else width, width, g, eps, zq_channels=z)
                for j in range(cfg.layers_per_block + 1)
            ]
            level = Level(blocks)
            if i > 0:
                time = i >= levels - cfg.time_compress_levels
                level.upsample = Upsample3D(width, compress_time=time)
            self.up.append(level)
        self.norm_out = SpatialNorm3D(ch[0], z, g, eps)
        self.conv_out = CausalConv3d(ch[0], cfg.in_channels, 3)
        _name_caches(self)

    def forward(self, z: torch.Tensor, step: CausalStep) -> torch.Tensor:
        """Run one temporal chunk of latents; z also conditions every SpatialNorm3D."""
        h = self.mid(self.conv_in(z, step), step, z)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h, step, z)
            if hasattr(level, "upsample"):
                h = level.upsample(h, step)
        return self.conv_out(norm_silu(self.norm_out, h, z, step), step)


class CausalVideoVAE(nn.Module):
    """The CogVideoX-style causal video VAE with `.encoder` and `.decoder` (no registered buffers).

    Caches are values: pass None for the first temporal chunk of a clip and the returned cache for
    each following chunk. Chunk lengths: encode 1 + 4k frames first, then multiples of 4; decode
    any latent counts (first chunk yields 1 + 4(n-1) frames, later ones 4n). `kernels` says how
    the operators run (`vae_conv.VAEKernels`; default: plain eager conv3d).
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(
        self, x: torch.Tensor, cache: Cache | None = None, kernels: VAEKernels = PLAIN
    ) -> tuple[torch.Tensor, Cache]:
        """Pixels (B, 3, T, H, W) in [-1, 1] -> (moments (B, 2*latent, T', h, w), next cache)."""
        step = CausalStep(previous=cache or {}, first=cache is None, kernels=kernels)
        moments = self.encoder(x, step)
        return moments, step.next

    def decode(
        self, z: torch.Tensor, cache: Cache | None = None, kernels: VAEKernels = PLAIN
    ) -> tuple[torch.Tensor, Cache]:
        """Unscaled latent (B, latent, T', h, w) -> (video (B, 3, T, H, W), next cache)."""
        step = CausalStep(previous=cache or {}, first=cache is None, kernels=kernels)
        video = self.decoder(z, step)
        return video, step.next


def latent_mean(moments: torch.Tensor) -> torch.Tensor:
    """Posterior mean: the first half of the moment channels, (B, latent, T', h, w)."""
    return moments.chunk(2, dim=1)[0]


def sample_latent(moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Posterior sample mean + exp(logvar / 2) * eps, logvar clamped to [-30, 20] (spec §6.2).

    eps is drawn in float32 on the generator's device, so a CPU generator gives the same latent
    on any device.
    """
    mean, logvar = moments.float().chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))
    eps = torch.randn(mean.shape, generator=generator, device=generator.device)
    return (mean + std * eps.to(mean.device)).to(moments.dtype)
