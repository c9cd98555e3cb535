"""Small seeded clips for the quality tests: a textured picture panning 1 pixel a frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter

FRAMES, SIZE_HW, UP_HW = 12, (48, 64), (96, 128)
FPS = Fraction(25)


def panning_frames(frames: int = FRAMES, size_hw: tuple[int, int] = SIZE_HW) -> np.ndarray:
    """(T, H, W, 3) uint8: blurred noise (the detail) panning left, over slow colour gradients."""
    height, width = size_hw
    rng = np.random.default_rng(0)
    canvas = cv2.GaussianBlur(
        rng.normal(0, 1, (height, width + frames)).astype(np.float32), (0, 0), 1.2
    )
    canvas *= 35 / canvas.std()
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    tint = np.stack(
        [20 * np.sin(xx / 40 + yy / 50), 10 * np.cos(yy / 30), -15 * np.sin(xx / 35)], -1
    )
    shots = [120 + canvas[:, t : t + width, None] + tint for t in range(frames)]
    return np.clip(shots, 0, 255).astype(np.uint8)


def write_clip(path: Path, frames: np.ndarray) -> Path:
    """Nearly lossless H.264 (crf 0) at 25 fps."""
    writer = VideoWriter(
        path, size_hw=frames.shape[1:3], time_base=1 / FPS, fps=FPS, crf=0, preset="ultrafast"
    )
    with writer:
        writer.write(frames, np.arange(len(frames)))
    return path


def decoded(path: Path) -> np.ndarray:
    """Every frame of a short clip."""
    return np.concatenate([chunk.frames for chunk in read_chunks(path, 64)])


def bicubic(frames: np.ndarray, size_hw: tuple[int, int] = UP_HW) -> np.ndarray:
    height, width = size_hw
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames])
