"""Per-frame quality measures of a refined clip against its input (docs/quality.md).

Fidelity (PSNR, SSIM) and colour difference (CIEDE2000) come from scikit-image, optical flow
from OpenCV (DIS). Written here, because no library has them: the warping error outside
occlusions (forward-backward flow consistency, Sundaram et al. 2010) and the high-frequency
energy (mean squared Laplacian of luma). Frames are uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity

PSNR_CAP_DB = 100.0  # identical frames: a finite number, so JSON and plots can hold it
# Added to both warping errors (grey levels) so that a static shot, where a bicubic upscale
# warps perfectly, does not turn a tiny error into a huge ratio.
WARP_EPSILON = 1.0
# Added to both high-frequency energies (squared grey levels): a flat frame's ratio stays near 1.
DETAIL_EPSILON = 1.0
# Forward-backward consistency: |f + b|^2 < ALPHA (|f|^2 + |b|^2) + BETA (pixels^2) is visible.
OCCLUSION_ALPHA, OCCLUSION_BETA = 0.01, 0.5


def scale_to(frame: np.ndarray, size_hw: tuple[int, int], *, antialias: bool) -> np.ndarray:
    """`frame` resized to `size_hw`: area-averaged (antialiased) or bicubic."""
    if frame.shape[:2] == tuple(size_hw):
        return frame
    method = cv2.INTER_AREA if antialias else cv2.INTER_CUBIC
    return cv2.resize(frame, (size_hw[1], size_hw[0]), interpolation=method)


def psnr_db(mse: float) -> float:
    """PSNR of 8-bit pictures from their mean squared error, capped at PSNR_CAP_DB."""
    return PSNR_CAP_DB if mse == 0 else min(float(10 * np.log10(255.0**2 / mse)), PSNR_CAP_DB)


def fidelity(reference: np.ndarray, test: np.ndarray) -> tuple[float, float, float]:
    """(PSNR dB, SSIM, mean squared error) of `test` against `reference`, same size."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    ssim = structural_similarity(reference, test, channel_axis=2, data_range=255)
    return psnr_db(mse), float(ssim), mse


def color_drift(reference: np.ndarray, test: np.ndarray) -> tuple[float, float, float, float]:
    """(mean CIEDE2000, mean shift of L*, a*, b*) of `test` against `reference`, same size."""
    ref_lab, test_lab = rgb2lab(reference), rgb2lab(test)
    delta_e = float(np.mean(deltaE_ciede2000(ref_lab, test_lab)))
    shift = (test_lab - ref_lab).reshape(-1, 3).mean(axis=0)
    return delta_e, float(shift[0]), float(shift[1]), float(shift[2])


def high_frequency_energy(frame: np.ndarray) -> float:
    """Mean squared Laplacian of luma (BT.601 weights, 0..255): fine detail and edges."""
    luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(luma, cv2.CV_32F) ** 2))


def _sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` read at x + flow(x) (bilinear, edges repeated): (H, W, ...) float32."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height))
    map_x = grid_x + flow[..., 0]
    map_y = grid_y.astype(np.float32) + flow[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def visible_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of frame t seen in frame t+1 (consistent flows, target inside).

    `forward` maps t to t+1 and `backward` t+1 to t, both (H, W, 2) float32 in pixels.
    """
    back_at_target = _sample(backward, forward)
    mismatch = np.sum((forward + back_at_target) ** 2, axis=-1)
    motion = np.sum(forward**2, axis=-1) + np.sum(back_at_target**2, axis=-1)
    height, width = forward.shape[:2]
    xs = np.arange(width)[None, :] + forward[..., 0]
    ys = np.arange(height)[:, None] + forward[..., 1]
    inside = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    return inside & (mismatch < OCCLUSION_ALPHA * motion + OCCLUSION_BETA)


def scale_flow(flow: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A (h, w, 2) flow field resized to `size_hw`, its vectors scaled with it."""
    height, width = size_hw
    if flow.shape[:2] == (height, width):
        return flow
    scaled = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    scaled[..., 0] *= width / flow.shape[1]
    scaled[..., 1] *= height / flow.shape[0]
    return scaled


def warping_error(
    previous: np.ndarray, current: np.ndarray, forward: np.ndarray, visible: np.ndarray
) -> float:
    """Mean absolute difference (grey levels) between `previous` and `current` warped onto it
    by `forward` (t -> t+1), over the `visible` pixels; 0 when none is visible.
    """
    if not visible.any():
        return 0.0
    warped = _sample(current.astype(np.float32), forward)
    difference = np.abs(previous.astype(np.float32) - warped).mean(axis=-1)
    return float(difference[visible].mean())


@dataclass(frozen=True)
class FlowPair:
    """Flow between two consecutive input frames, at the size it is used, and its visibility."""

    forward: np.ndarray  # (H, W, 2) t -> t+1
    visible: np.ndarray  # (H, W) bool


class InputFlow:
    """DIS optical flow between consecutive input frames (the input's motion is the truth)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._previous: np.ndarray | None = None

    def push(self, frame: np.ndarray, size_hw: tuple[int, int]) -> FlowPair | None:
        """Flow from the last pushed frame to `frame`, scaled to `size_hw`; None for the first."""
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        previous, self._previous = self._previous, gray
        if previous is None:
            return None
        forward = self._dis.calc(previous, gray, None)
        backward = self._dis.calc(gray, previous, None)
        visible = visible_mask(forward, backward)
        height, width = size_hw
        mask = cv2.resize(
            visible.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
        )
        return FlowPair(scale_flow(forward, size_hw), mask > 0)


def warp_ratio(error: float, baseline: float) -> float:
    """Warping error against the bicubic baseline's: 1 means as stable as the input itself."""
    return (error + WARP_EPSILON) / (baseline + WARP_EPSILON)


def detail_ratio(output: float, bicubic: float) -> float:
    """High-frequency energy against the bicubic upscale's: above 1, detail was added."""
    return (output + DETAIL_EPSILON) / (bicubic + DETAIL_EPSILON)
