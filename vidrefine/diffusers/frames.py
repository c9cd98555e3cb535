"""The video a `FlashVideoRefinePipeline` call is given, as uint8 frames (T, H, W, 3).

Accepted as diffusers' video pipelines accept it (a list of PIL images, an array or tensor of
frames) or as a file path, read with PyAV when it is installed, else with diffusers' `load_video`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidrefine.errors import BadInput

ACCEPTED = (
    "frames (T, H, W, 3) as uint8 or as floats in [0, 1] (numpy or torch), a list of PIL "
    "images or of (H, W, 3) frames, or a video file path"
)


class BadPipelineInput(BadInput, ValueError):
    """A video or argument the pipeline cannot take: a `ValueError` and a vidrefine `BadInput`."""


def read_video_file(path: Path) -> np.ndarray:
    """Every frame of the first video stream of `path`, decoded to rgb24 (T, H, W, 3)."""
    if not path.is_file():
        raise BadPipelineInput(f"video file not found: {path}")
    try:
        import av
    except ImportError:  # a diffusers installation without PyAV: imageio through diffusers
        from diffusers.utils import load_video

        return as_frames(load_video(str(path)))
    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, IndexError, ValueError) as err:
        raise BadPipelineInput(f"{path} cannot be read as a video ({err})") from err
    if not frames:
        raise BadPipelineInput(f"{path} holds no video frames")
    return np.stack(frames)


def _as_array(item: Any) -> np.ndarray:
    if isinstance(item, torch.Tensor):
        return item.detach().cpu().numpy()
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        return np.asarray(item.convert("RGB"))
    return np.asarray(item)


def as_frames(video: Any) -> np.ndarray:
    """`video` (see `ACCEPTED`) as uint8 frames (T, H, W, 3); BadPipelineInput otherwise."""
    if isinstance(video, (str, Path)):
        return read_video_file(Path(video))
    if isinstance(video, (list, tuple)):
        if not video:
            raise BadPipelineInput("video holds no frames")
        arrays = [_as_array(v) for v in video]
        if len({a.shape for a in arrays}) != 1:
            raise BadPipelineInput("video frames differ in size; every frame must have one size")
        array = np.stack(arrays)
    else:
        array = _as_array(video)
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise BadPipelineInput(f"video of shape {array.shape} is not {ACCEPTED}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise BadPipelineInput(f"video of dtype {array.dtype} is not {ACCEPTED}")
    if array.min() < 0 or array.max() > 1:
        raise BadPipelineInput(
            f"video floats span [{array.min():.3g}, {array.max():.3g}], not [0, 1]"
        )
    return np.rint(array * 255).astype(np.uint8)


__all__ = ["ACCEPTED", "BadPipelineInput", "as_frames", "read_video_file"]
