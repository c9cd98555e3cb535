"""A clip's training windows as HR frames: read once, one window in memory, cropped to the size.

Training frames keep their aspect: each is resized (bilinear, antialiased, as `upscale` resizes)
to cover the training size and cropped at the centre, a multiple of 16 pixels on each side (the
VAE's 8 times the DiT's 2x2 patch).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from vidrefine.config import parse_size
from vidrefine.errors import BadInput
from vidrefine.io.reader import read_chunks
from vidrefine.plan.geometry import MODEL_MULTIPLE
from vidrefine.train.data import Window
from vidrefine.train.degrade import resize, to_float, to_uint8

READ_CHUNK_FRAMES = 8  # frames decoded at a time while a window fills
_CROP = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")  # WIDTHxHEIGHT


def crop_hw(input_hw: tuple[int, int], size: str) -> tuple[int, int]:
    """The training size of a clip of `input_hw` for `--size` (WxH exact, Np the short side).

    Each side is rounded down to a multiple of 16 (WxH may be as small as 16x16, for crops);
    the aspect is the clip's for "Np".
    """
    crop = _CROP.match(size)
    if crop is not None:  # training crops may be small (the paper trains on 540x960 crops)
        target: tuple[float, float] = (int(crop.group(2)), int(crop.group(1)))
    else:
        request = parse_size(size)
        short = request.short_side or min(request.exact_hw or input_hw)
        scale = short / min(input_hw)
        target = (input_hw[0] * scale, input_hw[1] * scale)
    out = tuple(int(side) // MODEL_MULTIPLE * MODEL_MULTIPLE for side in target)
    if min(out) < MODEL_MULTIPLE:
        raise BadInput(f"--size {size}: smaller than {MODEL_MULTIPLE} pixels on a side")
    return out  # type: ignore[return-value]


def cover_and_crop(frames: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3) resized to cover `out_hw` (aspect kept) and cropped at the centre."""
    in_h, in_w = frames.shape[1:3]
    scale = max(out_hw[0] / in_h, out_hw[1] / in_w)
    cover = (max(out_hw[0], math.ceil(in_h * scale)), max(out_hw[1], math.ceil(in_w * scale)))
    video = resize(to_float(frames), cover) if cover != (in_h, in_w) else to_float(frames)
    top, left = (cover[0] - out_hw[0]) // 2, (cover[1] - out_hw[1]) // 2
    return to_uint8(video[:, :, top : top + out_hw[0], left : left + out_hw[1]])


def window_frames(path: Path, windows: Sequence[Window]) -> Iterator[np.ndarray]:
    """The frames (T, H, W, 3) of each of `windows` (sorted, not overlapping) of one file.

    The file is decoded once, a few frames at a time; at most one window is held.
    """
    if not windows:
        return
    info = windows[0].clip.info if path == windows[0].clip.path else None
    todo = iter(windows)
    current: Window | None = next(todo)
    held, filled = None, 0
    with read_chunks(path, READ_CHUNK_FRAMES, info=info) as reader:
        for chunk in reader:
            for offset, frame in enumerate(chunk.frames):
                if current is None or chunk.start_index + offset < current.start_frame:
                    continue
                if held is None:
                    held = np.empty((current.frames, *frame.shape), dtype=np.uint8)
                held[filled] = frame
                filled += 1
                if filled == current.frames:
                    yield held
                    held, filled, current = None, 0, next(todo, None)
            if current is None:
                return
    raise BadInput(f"{path}: ended before {current.name} (the file is shorter than its header)")


def to_model_video(frames: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> the VAE's input (1, 3, T, H, W) in [-1, 1]."""
    video = to_float(frames).to(device=device, dtype=dtype)  # (T, 3, H, W) in [0, 1]
    return rearrange(video * 2 - 1, "t c h w -> 1 c t h w")
