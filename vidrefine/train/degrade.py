"""Pixel degradations that make the low-res copy of a training window (docs/training.md).

* "weak", the paper's (FlashVideo PR #12): bilinear antialiased downscale by U(4, 8) and back up.
* "strong", real-world: Real-ESRGAN's second-order blur, resize and noise, then real video-codec
  compression through PyAV (h264, mpeg2, mpeg4 at random bitrates), as RealBasicVSR extends it,
  and back up to the HR size.
* "pair": the dataset's own low-res clip (`lr_video`), resized to the HR size.

Every way back up is the resize `upscale` gives its input (bilinear, antialiased), so training
sees what inference sees. One window is degraded at a time: memory is a few copies of the window.
Every random choice comes from the window's seed and is returned in a JSON-safe record.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidrefine.errors import BadInput

KINDS = ("weak", "strong", "pair")
CODECS = ("libx264", "mpeg2video", "mpeg4")
CODEC_RATE = Fraction(8)  # frames per second the codec is told (the model's training rate)
MIN_CODEC_SIDE = 16  # pictures are never compressed smaller than a macroblock


@dataclass(frozen=True)
class DegradationSettings:
    """Ranges of the random degradations; defaults are the paper's and Real-ESRGAN's."""

    strong_prob: float = 0.5  # the paper's aug_prob: strong (or a pair) half of the time
    scale_range: tuple[float, float] = (4.0, 8.0)  # HR / LR, the paper's "4 ~ 8"
    bits_per_pixel: tuple[float, float] = (0.02, 0.3)  # codec bitrate / (pixels x frame rate)

    def __post_init__(self) -> None:
        """Refuse ranges that cannot be drawn from."""
        if not 0.0 <= self.strong_prob <= 1.0:
            raise BadInput(f"strong degradation probability {self.strong_prob} is not in [0, 1]")
        lo, hi = self.scale_range
        if not 1.0 <= lo <= hi:
            raise BadInput(f"degradation scales {lo}-{hi}: need 1 <= low <= high")


def choose_kind(rng: np.random.Generator, has_pair: bool, settings: DegradationSettings) -> str:
    """The paper's choice: the strong path with probability `strong_prob`, else the weak one.

    A window with a real low-res copy uses that copy on the strong branch.
    """
    if rng.random() >= settings.strong_prob:
        return "weak"
    return "pair" if has_pair else "strong"


def to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in [0, 1]."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w") / 255.0


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Frames (T, 3, H, W) float in [0, 1] -> uint8 (T, H, W, 3), rounded and clipped."""
    pixels = (video.clamp(0, 1) * 255).round().to(torch.uint8)
    return rearrange(pixels, "t c h w -> t h w c").numpy()


def resize(video: torch.Tensor, size_hw: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize (T, 3, H, W); bilinear and bicubic antialiased, as `upscale` resizes its input."""
    if tuple(video.shape[-2:]) == tuple(size_hw):
        return video
    if mode == "area":
        return F.interpolate(video, size=size_hw, mode="area")
    return F.interpolate(video, size=size_hw, mode=mode, align_corners=False, antialias=True)


def scaled_hw(size_hw: tuple[int, int], scale: float, *, even: bool = False) -> tuple[int, int]:
    """`size_hw` divided by `scale`, at least 1 pixel (even and >= 16 for a codec)."""
    if not even:
        return tuple(max(1, round(side / scale)) for side in size_hw)  # type: ignore[return-value]
    return tuple(max(MIN_CODEC_SIDE, 2 * round(side / scale / 2)) for side in size_hw)  # type: ignore[return-value]


def weak(
    video: torch.Tensor, rng: np.random.Generator, settings: DegradationSettings
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The paper's weak path: downscale by U(scale_range), antialiased, and back up."""
    scale = float(rng.uniform(*settings.scale_range))
    low = resize(video, scaled_hw(tuple(video.shape[-2:]), scale))
    return resize(low, tuple(video.shape[-2:])), {"scale": round(scale, 4)}


def gaussian_kernel(size: int, sigma_xy: tuple[float, float], theta: float) -> torch.Tensor:
    """A normalised (size, size) Gaussian with axis sigmas `sigma_xy` turned by `theta`."""
    half = size // 2
    y, x = torch.meshgrid(
        torch.arange(-half, half + 1.0), torch.arange(-half, half + 1.0), indexing="ij"
    )
    cos, sin = math.cos(theta), math.sin(theta)
    u, v = cos * x + sin * y, -sin * x + cos * y
    kernel = torch.exp(-0.5 * ((u / sigma_xy[0]) ** 2 + (v / sigma_xy[1]) ** 2))
    return kernel / kernel.sum()


def blur(
    video: torch.Tensor, rng: np.random.Generator, sigma_range: tuple[float, float]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Isotropic (45 %) or anisotropic Gaussian blur, kernel 7-21 pixels (Real-ESRGAN's)."""
    size = int(rng.choice(np.arange(7, 22, 2)))
    sx = float(rng.uniform(*sigma_range))
    iso = rng.random() < 0.45
    sy = sx if iso else float(rng.uniform(*sigma_range))
    theta = 0.0 if iso else float(rng.uniform(0, math.pi))
    kernel = gaussian_kernel(size, (sx, sy), theta)[None, None].repeat(3, 1, 1, 1)
    pad = min(size // 2, video.shape[-1] - 1, video.shape[-2] - 1)
    padded = F.pad(video, (pad, pad, pad, pad), mode="reflect") if pad else video
    out = F.conv2d(padded, kernel, groups=3)
    params = {"kernel": size, "sigma": [round(sx, 4), round(sy, 4)], "theta": round(theta, 4)}
    return resize(out, tuple(video.shape[-2:])), params


def random_resize(
    video: torch.Tensor, rng: np.random.Generator, scales: tuple[float, float]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Resize by a factor from `scales` with a random kernel (up 20 %, down 70 %, keep 10 %)."""
    way = rng.choice(["up", "down", "keep"], p=[0.2, 0.7, 0.1])
    factor = {"up": rng.uniform(1, max(1, scales[1])), "down": rng.uniform(scales[0], 1)}.get(
        way, 1.0
    )
    mode = str(rng.choice(["area", "bilinear", "bicubic"]))
    size = scaled_hw(tuple(video.shape[-2:]), 1 / float(factor))
    return resize(video, size, mode).clamp(0, 1), {"factor": round(float(factor), 4), "mode": mode}


def add_noise(
    video: torch.Tensor, rng: np.random.Generator, sigma_range: tuple[float, float], seed: int
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Gaussian (sigma in levels of 255) or Poisson noise, grey 40 % of the time (Real-ESRGAN's)."""
    generator = torch.Generator().manual_seed(seed)
    grey = rng.random() < 0.4
    shape = (video.shape[0], 1, *video.shape[2:]) if grey else video.shape
    if rng.random() < 0.5:
        sigma = float(rng.uniform(*sigma_range))
        noise = torch.randn(shape, generator=generator) * sigma / 255
        params = {"noise": "gaussian", "sigma": round(sigma, 4), "grey": bool(grey)}
    else:
        scale = float(rng.uniform(0.05, 3.0))
        level = video.mean(1, keepdim=True) if grey else video
        counts = torch.poisson(level.clamp(0, 1) * 255 * 10, generator=generator)
        noise = (counts / (255 * 10) - level) * scale
        params = {"noise": "poisson", "scale": round(scale, 4), "grey": bool(grey)}
    return (video + noise).clamp(0, 1), params


def compress(frames: np.ndarray, codec: str, bit_rate: int) -> tuple[np.ndarray, int]:
    """Encode uint8 frames (T, h, w, 3) with `codec` at `bit_rate` in memory and decode them.

    Returns the decoded frames (T, h, w, 3) and the bytes of the compressed video packets.
    """
    buffer, size = io.BytesIO(), 0
    last = len(frames) - 1
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=CODEC_RATE)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        for index, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            frame.pts = index
            for packet in [*stream.encode(frame), *(stream.encode(None) if index == last else [])]:
                size += packet.size
                out.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r") as source:
        decoded = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
    while len(decoded) < len(frames):  # a codec may hold back a frame it could not finish
        decoded.append(decoded[-1])
    return np.stack(decoded[: len(frames)]), size


def second_order(
    video: torch.Tensor, rng: np.random.Generator, seed: int
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Real-ESRGAN's two rounds of blur, resize and noise (the second milder, blur p 0.8)."""
    steps: list[dict[str, Any]] = []
    # (blur sigmas, resize factors, noise sigmas, blur probability) of each round
    rounds = (
        ((0.2, 3.0), (0.15, 1.5), (1.0, 30.0), 1.0),
        ((0.2, 1.5), (0.3, 1.2), (1.0, 25.0), 0.8),
    )
    for number, (blur_sigma, scales, noise_sigma, blur_prob) in enumerate(rounds):
        if rng.random() < blur_prob:
            video, params = blur(video, rng, blur_sigma)
            steps.append({"op": "blur", **params})
        video, params = random_resize(video, rng, scales)
        steps.append({"op": "resize", **params})
        video, params = add_noise(video, rng, noise_sigma, seed + number)
        steps.append({"op": "noise", **params})
    return video, steps


def strong(
    video: torch.Tensor, rng: np.random.Generator, seed: int, settings: DegradationSettings
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Second-order degradation, the LR size, codec compression, and back up to the HR size."""
    hr_hw = tuple(video.shape[-2:])
    low, steps = second_order(video, rng, seed)
    scale = float(rng.uniform(*settings.scale_range))
    lr_hw = scaled_hw(hr_hw, scale, even=True)
    frames = to_uint8(resize(low, lr_hw, str(rng.choice(["area", "bilinear", "bicubic"]))))
    codec = str(rng.choice(CODECS))
    bpp = math.exp(rng.uniform(*np.log(settings.bits_per_pixel)))
    bit_rate = max(1000, int(bpp * lr_hw[0] * lr_hw[1] * float(CODEC_RATE)))
    frames, size = compress(frames, codec, bit_rate)
    codec_step = {"op": "codec", "codec": codec, "bit_rate": bit_rate, "bytes": size}
    params = {"steps": steps, "scale": round(scale, 4), "lr_hw": list(lr_hw), **codec_step}
    return resize(to_float(frames), hr_hw), params


def degrade(
    frames: np.ndarray,
    seed: int,
    settings: DegradationSettings,
    *,
    lr_frames: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The degraded copy of one window (uint8 (T, H, W, 3), HR size) and the record of it.

    `lr_frames` are the same frames of the window's real low-res clip, if there is one.
    """
    rng = np.random.default_rng(seed)
    kind = choose_kind(rng, lr_frames is not None, settings)
    video = to_float(frames)
    if kind == "weak":
        out, params = weak(video, rng, settings)
    elif kind == "strong":
        out, params = strong(video, rng, seed, settings)
    else:
        assert lr_frames is not None
        out, params = resize(to_float(lr_frames), tuple(video.shape[-2:])), {}
    return to_uint8(out), {"kind": kind, "seed": seed, **params}
