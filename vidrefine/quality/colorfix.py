"""Colour fixes: pull refined frames back to the colours of their input (docs/quality.md).

`adain` matches each Lab channel's mean and standard deviation over a window to the input's
(AdaIN-style statistics transfer in a perceptual space); `wavelet` keeps the refined frames'
high-frequency bands and takes the lowest band from the input (an à trous wavelet: a cascade of
dilated [1, 2, 1] / 4 blurs). Both work on uint8 (T, H, W, 3) RGB and never change the frame
count, size or order.
"""

from __future__ import annotations

import cv2
import numpy as np

from vidrefine.config import COLOR_FIXES
from vidrefine.errors import BadInput

WAVELET_LEVELS = 5  # blurs at dilations 1..16: the lowest band holds detail coarser than ~64 px


def apply_color_fix(mode: str, frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`frames` (T, H, W, 3) uint8 corrected towards `reference` (T, h, w, 3) uint8, any size.

    "wavelet" resizes the reference (bicubic) to the frames' size; "adain" compares statistics
    measured at one small size; "none" returns `frames` itself.
    """
    if mode not in COLOR_FIXES:
        raise BadInput(f"color fix {mode!r}: must be one of {', '.join(COLOR_FIXES)}")
    if mode == "none":
        return frames
    if len(frames) != len(reference):
        raise ValueError(f"{len(frames)} frames but {len(reference)} reference frames")
    if mode == "adain":  # statistics need no resize
        return adain_fix(frames, reference)
    return wavelet_fix(frames, resize_frames(reference, frames.shape[1:3]))


def resize_frames(frames: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, H, W, 3) uint8, bicubic; the same array when sizes agree."""
    if frames.shape[1:3] == tuple(size_hw):
        return frames
    height, width = size_hw
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames])


STATS_WIDTH = 256  # frames are measured at most this wide: statistics need no more pixels


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """float32 in 0..255 -> uint8, rounded and saturated (in place on `image`)."""
    np.clip(image, 0.0, 255.0, out=image)
    image += 0.5
    return image.astype(np.uint8)


def _lab(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> float32 CIE Lab (L in 0..100), OpenCV's D65 conversion."""
    return cv2.cvtColor(frame.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)


def lab_statistics(frames: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of L*, a*, b* over (T, H, W, 3) uint8 frames at `size_hw`.

    Frames are first reduced (area average) to `size_hw`, so two clips measured at one size
    are compared on the same footing, cheaply.
    """
    height, width = size_hw
    small = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    pixels = np.concatenate([_lab(f).reshape(-1, 3) for f in small]).astype(np.float64)
    return pixels.mean(axis=0), pixels.std(axis=0)


def adain_fix(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Match the mean and standard deviation of L*, a*, b* over the window to the reference's.

    Statistics are taken over the whole window (not per frame), so the correction is one
    smooth transform per window and adds no flicker of its own. Both are measured at the
    reference's size, at most `STATS_WIDTH` wide.
    """
    height, width = reference.shape[1:3]
    scale = min(1.0, STATS_WIDTH / width)
    size_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
    mean, std = lab_statistics(frames, size_hw)
    ref_mean, ref_std = lab_statistics(reference, size_hw)
    gain = ref_std / np.maximum(std, 1e-3)
    affine = np.hstack([np.diag(gain), (ref_mean - mean * gain)[:, None]]).astype(np.float32)
    out = np.empty_like(frames)
    for index, frame in enumerate(frames):
        lab = cv2.transform(_lab(frame), affine)
        out[index] = _to_uint8(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255.0)
    return out


def wavelet_low(image: np.ndarray, levels: int = WAVELET_LEVELS) -> np.ndarray:
    """The lowest band of an à trous wavelet decomposition of a float32 (H, W, C) image."""
    low = image
    for level in range(levels):
        step = 2**level
        kernel = np.zeros(2 * step + 1, dtype=np.float32)
        kernel[[0, step, 2 * step]] = (0.25, 0.5, 0.25)
        low = cv2.sepFilter2D(low, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    return low


def wavelet_fix(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each frame's high-frequency bands over the reference frame's lowest band."""
    out = np.empty_like(frames)
    for index, (frame, ref) in enumerate(zip(frames, reference, strict=True)):
        image, base = frame.astype(np.float32), ref.astype(np.float32)
        out[index] = _to_uint8(image - wavelet_low(image) + wavelet_low(base))
    return out
