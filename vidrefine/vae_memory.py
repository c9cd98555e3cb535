"""Activation-memory estimates for one VAE pass (what `plan_vae` sizes tiles and chunks with).

Arithmetic for the official widths (128, 256, 256, 512), one pass over a window of Hp x Wp pixels
producing or reading F pixel frames, b bytes per value (2 for bf16/fp16, 4 for fp32):

Decoder. The largest tensors live at full resolution after `up.1` upsamples 256 channels:
  * `up.0.block.0.norm1` GroupNorm on 256 channels: input (b) + fp32 copy (4) + fp32 result (4)
    = 256 * (b + 8) * F * Hp * Wp bytes; conv_y/conv_b outputs (2 * 256 * b) come right after
    the fp32 temporaries are freed, so the GroupNorm line is the peak.
  * causal caches: 2 frames per 3x3x3 conv; at full res 9 convs of <= 256 channels, at half res
    8 convs of 256 (a quarter of the pixels): about 2 * (256 + 8 * 128 + 512) * b = 3584 * b
    bytes per output pixel; with the add_weighted temporaries and the per-level leftovers this
    was measured closer to 6144 * b (benchmarks/vae.py, CPU fp32).
  * a 1.5 margin for padded conv inputs (F + 2 frames) and allocator slack (calibrated on CPU:
    measured/estimated peaks were 0.90 whole, 1.04 with 2-latent chunks, 1.13 with 8-latent
    tiles; see benchmarks/RESULTS.md).
  decode_peak = 1.5 * 256 * (b + 8) * F * Hp * Wp + 6144 * b * Hp * Wp
  e.g. 9 frames (the first chunk of [0:3]) at 1072 x 1920 in bf16:
  1.5 * 256 * 10 * 9 * 2.06e6 + 6144 * 2 * 2.06e6 = 71.1e9 + 25.3e9 bytes = 89.8 GiB; the
  original's half-width tile (1072 x 1088 px) needs 50.9 GiB, which is why it splits the width
  in two on its 80 GB cards (spec §6.5) and why 24 GB cards need smaller tiles.

Encoder. Full resolution carries 128 channels (`conv_in`, `down.0`): input x (b), GroupNorm fp32
copy and result (8), and the residual branch (b) = 128 * (2b + 8) * F * Hp * Wp, margin 1.5
(not measured separately; same allocator reasoning); caches about 2 * 7 * 128 * b per pixel,
rounded to 2048 * b.
  encode_peak = 1.5 * 128 * (2b + 8) * F * Hp * Wp + 2048 * b * Hp * Wp
  e.g. 17 frames at 1072 x 1920 in bf16: 1.5 * 128 * 12 * 17 * 2.06e6 + 8.4e9 bytes = 83 GiB.

Both scale with the channel width: for another config multiply by block_out_channels[0] / 128.
The pixel accumulator (3 x T x H x W fp32) and the weights (215.6 M params * b) come on top.
"""

from __future__ import annotations

MARGIN = 1.5
OFFICIAL_WIDTH = 128
OFFICIAL_PARAMS = 215_583_907  # CausalVideoVAE(OFFICIAL_VAE) parameter count


def decode_peak_bytes(frames: int, window_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Peak activation bytes of one decoder pass producing `frames` frames of `window_px_hw`."""
    pixels = window_px_hw[0] * window_px_hw[1]
    return MARGIN * 256 * (dtype_bytes + 8) * frames * pixels + 6144 * dtype_bytes * pixels


def encode_peak_bytes(frames: int, window_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Peak activation bytes of one encoder pass over `frames` frames of `window_px_hw`."""
    pixels = window_px_hw[0] * window_px_hw[1]
    return MARGIN * 128 * (2 * dtype_bytes + 8) * frames * pixels + 2048 * dtype_bytes * pixels


def fixed_bytes(frames: int, size_px_hw: tuple[int, int], *, dtype_bytes: int) -> float:
    """Weights plus the float32 output accumulator of a whole clip."""
    return OFFICIAL_PARAMS * dtype_bytes + 3 * 4 * frames * size_px_hw[0] * size_px_hw[1]
