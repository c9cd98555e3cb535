"""Activation-memory estimates for one VAE pass (what `plan_vae` sizes tiles and chunks with).

Model: the live tensors at a pass's peak, counted in values per pixel of the window for the
official widths (128, 256, 256, 512), times the dtype's bytes, times a device factor:

  peak = factor(device) * b * Hp * Wp * (per_frame * F + per_pixel)

for a window of Hp x Wp pixels producing or reading F pixel frames. The two coefficients are the
live-tensor peak measured with `LiveTensorMemory` on the CPU (tests/test_vae_memory.py re-measures
them), at 1/4 width and scaled by 4, at F = 5, 9 and 17 frames (exactly linear in F) and in fp32
and bf16 (bf16 is exactly half: every tensor alive at the peak is in the model dtype). Where the
decoder peaks, in the first conv of `up.0` at full resolution, the block input (256 channels),
its activation (256), the conv's input window (256, F + 2 frames) and its output (128) are alive:
7 x 128 = 896 values per pixel-frame; the rest (per_pixel) are the causal caches (2 frames per
3x3x3 conv) and the window's two halo frames. The encoder peaks at 128 channels: 4 x 128 = 512.
conv2d_sum in NCDHW keeps a frame-major copy and one tap's output more (+128); capped calls
(time chunks, `vae_conv`) drop the whole-window copy. Coefficients, (per frame, per pixel):

| path | decode | encode |
|---|---|---|
| conv3d, one call (the CPU default) | 896, 2530 | 512, 1816 |
| conv2d_sum, one call | 1024, 2530 | 640, 1816 |
| conv3d, capped | 700, 2760 | 384, 2072 |
| conv2d_sum, capped | 896, 2790 | 512, 2072 |

A measured choice (CUDA "auto") may pick either method per layer: the larger row counts. NDHWC
needs no more (conv2d_sum's frame copy is a view there): the NCDHW rows bound it. Capped rows are
for chunks of one frame plus the halo; larger chunks add 1.5 x their elements per pixel.

The device factor: 1.0 on the CPU plus 5% (the live-tensor peak is exact there); 1.65 on CUDA,
from the one GPU measurement (H200, bf16, 2026-11-30, benchmarks/RESULTS.md): a 9-frame
1088x1920 decode chunk held 72.7 GB of activations (77.8 GB allocated less the resident weights
and the output clip) where the live-tensor model counts 44.3 GB: cuDNN's workspace and its NCDHW
transposes, which the CPU does not have. benchmarks/gpu_quick.sh measures it again for the new
paths (measured / estimate per pass).
  e.g. the first decode chunk (9 frames) at 1072 x 1920 in bf16 on CUDA, one conv3d call:
  1.65 * 2 * 2,058,240 * (896 * 9 + 2530) = 67.0 GiB; the same on the CPU 42.6 GiB.

Both scale with the channel width: for another config multiply by block_out_channels[0] / 128.
The pixel accumulator (3 x T x H x W fp32) and the weights (215.6 M params * b) come on top.
"""

from __future__ import annotations

OFFICIAL_PARAMS = 215_583_907  # CausalVideoVAE(OFFICIAL_VAE) parameter count
DEVICE_FACTOR = {"cpu": 1.05, "cuda": 1.65}
PATHS = ("conv3d", "conv2d_sum", "measured")

# (per output frame, per window pixel) live values at the peak, official widths (see above)
_DECODE = {
    ("conv3d", False): (896, 2530),
    ("conv2d_sum", False): (1024, 2530),
    ("conv3d", True): (700, 2760),
    ("conv2d_sum", True): (896, 2790),
}
_ENCODE = {
    ("conv3d", False): (512, 1816),
    ("conv2d_sum", False): (640, 1816),
    ("conv3d", True): (384, 2072),
    ("conv2d_sum", True): (512, 2072),
}
_PEAK_CHANNELS = {"decode": 256, "encode": 128}  # input width of the peak conv
_MIN_CHUNK_FRAMES = 3  # a capped call reads at least one frame and its two halo frames


def _values_per_pixel(
    table: dict, peak_channels: int, frames: int, pixels: int, path: str, cap_elements: int
) -> float:
    """Live values per window pixel of the largest path `path` may take."""
    window = peak_channels * (frames + 2) * pixels
    capped = 0 < cap_elements < window
    methods = ("conv3d", "conv2d_sum") if path == "measured" else (path,)
    worst = 0.0
    for method in methods:
        per_frame, per_pixel = table[(method, capped)]
        values = per_frame * frames + per_pixel
        if capped:  # chunks bigger than the measured minimum: their window and output
            extra = cap_elements / pixels - _MIN_CHUNK_FRAMES * peak_channels
            values += 1.5 * max(0.0, extra)
        worst = max(worst, values)
    return worst


def _peak(kind: str, frames: int, window_px_hw, dtype_bytes, path, cap_elements, device) -> float:
    if path not in PATHS:
        raise ValueError(f"VAE memory path {path!r} is not one of {', '.join(PATHS)}")
    pixels = window_px_hw[0] * window_px_hw[1]
    table = _DECODE if kind == "decode" else _ENCODE
    values = _values_per_pixel(table, _PEAK_CHANNELS[kind], frames, pixels, path, cap_elements)
    return DEVICE_FACTOR[device] * dtype_bytes * pixels * values


def decode_peak_bytes(
    frames: int,
    window_px_hw: tuple[int, int],
    *,
    dtype_bytes: int,
    path: str = "conv3d",
    cap_elements: int = 0,
    device: str = "cuda",
) -> float:
    """Peak activation bytes of one decoder pass producing `frames` frames of `window_px_hw`.

    `path`: "conv3d", "conv2d_sum" or "measured" (either, per layer); `cap_elements`: the
    largest conv call (0 = one call); `device`: "cuda" or "cpu" (its factor).
    """
    return _peak("decode", frames, window_px_hw, dtype_bytes, path, cap_elements, device)


def encode_peak_bytes(
    frames: int,
    window_px_hw: tuple[int, int],
    *,
    dtype_bytes: int,
    path: str = "conv3d",
    cap_elements: int = 0,
    device: str = "cuda",
) -> float:
    """Peak activation bytes of one encoder pass over `frames` frames of `window_px_hw`."""
    return _peak("encode", frames, window_px_hw, dtype_bytes, path, cap_elements, device)


def fixed_bytes(frames: int, size_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Weights plus the float32 output accumulator of a whole clip."""
    return OFFICIAL_PARAMS * dtype_bytes + 3 * 4 * frames * size_px_hw[0] * size_px_hw[1]
