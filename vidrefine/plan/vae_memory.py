"""Activation-memory estimates for one VAE pass (what `plan_vae` sizes tiles and chunks with).

Arithmetic for the official widths (128, 256, 256, 512), one pass over a window of Hp x Wp pixels
producing or reading F pixel frames, b bytes per value (2 for bf16/fp16, 4 for fp32).

The blocks keep few full-size tensors alive: GroupNorm makes its fp32 copy and result a few
groups at a time (`vae_blocks.GROUPS_PER_SLICE`), SiLU and the SpatialNorm3D product and sum run
in place on fresh tensors, and a ResnetBlock rebinds each intermediate as soon as the next exists.
What is left at the peak, a 3x3x3 causal conv at full resolution, is the block input, the
activation, the conv's time-padded copy of it and its output: all in the model dtype, so the peak
is proportional to b (measured with `LiveTensorMemory` on the CPU: bf16 peaks are half the fp32
ones, decode and encode alike).

Decoder: 256 channels at full resolution after `up.1`; three full-size tensors of 256 x b bytes
per pixel-frame at the peak conv (the block input is shared with the next block), a 1.5 margin
for the padded frames (F + 2) and allocator slack (calibrated on the CPU in fp32:
measured/estimated 0.90 whole, 1.04 with 2-latent chunks, 1.13 with 8-latent tiles,
benchmarks/RESULTS.md), plus the causal caches and per-pixel overheads, about 6144 bytes per
output pixel in fp32 (2 frames for each 3x3x3 conv across the levels, with the tile blending
temporaries). That term is counted at 4 bytes a value whatever the dtype (`CACHE_BYTES`): so
counted, an 8-latent-tile bf16 run measures 0.97 of its estimate and whole frames 0.76, whereas
with the term scaled by b the tiled run measures 1.33x its estimate.
  decode_peak = 1.5 * 256 * 3b * F * Hp * Wp + 6144 * 4 * Hp * Wp
  e.g. 9 frames (the first chunk of [0:3]) at 1072 x 1920 in bf16: 39.7 + 47.1 = 86.9 GiB; the
  original's half-width tile (1072 x 1088 px) 49.2 GiB (the spec's 80 GB cards split the width
  in two, spec §6.5; 24 GB cards need smaller tiles).

Encoder: 128 channels at full resolution (`conv_in`, `down.0`), 3.5 x b bytes per channel per
pixel-frame at the peak (measured 3.3 b in fp32 and bf16), margin 1.5, caches about
2 * 7 * 128 values per pixel, rounded to 2048, at 4 bytes.
  encode_peak = 1.5 * 128 * 3.5b * F * Hp * Wp + 2048 * 4 * Hp * Wp
  e.g. 17 frames at 1072 x 1920 in bf16: 59.5 GiB.

Both scale with the channel width: for another config multiply by block_out_channels[0] / 128.
The pixel accumulator (3 x T x H x W fp32) and the weights (215.6 M params * b) come on top.
"""

from __future__ import annotations

MARGIN = 1.5
CACHE_BYTES = 4  # per-pixel overheads counted at 4 bytes whatever the dtype (see above)
OFFICIAL_PARAMS = 215_583_907  # CausalVideoVAE(OFFICIAL_VAE) parameter count


def decode_peak_bytes(frames: int, window_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Peak activation bytes of one decoder pass producing `frames` frames of `window_px_hw`."""
    pixels = window_px_hw[0] * window_px_hw[1]
    return MARGIN * 256 * 3 * dtype_bytes * frames * pixels + 6144 * CACHE_BYTES * pixels


def encode_peak_bytes(frames: int, window_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Peak activation bytes of one encoder pass over `frames` frames of `window_px_hw`."""
    pixels = window_px_hw[0] * window_px_hw[1]
    return MARGIN * 128 * 3.5 * dtype_bytes * frames * pixels + 2048 * CACHE_BYTES * pixels


def fixed_bytes(frames: int, size_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Weights plus the float32 output accumulator of a whole clip."""
    return OFFICIAL_PARAMS * dtype_bytes + 3 * 4 * frames * size_px_hw[0] * size_px_hw[1]
