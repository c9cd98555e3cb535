"""Shot detection: where a clip's hard cuts are, found by PySceneDetect on frames read by PyAV.

The clip is decoded once through `io/reader.py` (the same frames, order and rotation the refiner
sees), each frame shrunk by striding to about `DETECT_WIDTH` pixels wide and handed to
PySceneDetect's `AdaptiveDetector`, which compares each frame's content change with that of its
neighbours, so fast camera motion and fades do not read as cuts. Memory is one read chunk.
`--cut-threshold` is the detector's adaptive threshold: lower finds more cuts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import AdaptiveDetector

from vidrefine.io.probe import MediaInfo
from vidrefine.io.reader import read_chunks

DETECT_WIDTH = 256  # frames are shrunk to about this width: cuts are visible at any size
READ_CHUNK_FRAMES = 16
MIN_CONTENT_CHANGE = 15.0  # a frame whose content changes less is never a cut (PySceneDetect's)


def small_frame(frame: np.ndarray) -> np.ndarray:
    """An (H, W, 3) RGB frame shrunk by an integer stride and turned to BGR, as OpenCV reads."""
    step = max(1, frame.shape[1] // DETECT_WIDTH)
    return np.ascontiguousarray(frame[::step, ::step, ::-1])


def find_cuts(
    frames: Iterable[np.ndarray], fps: Fraction, *, threshold: float, min_shot_frames: int
) -> tuple[int, ...]:
    """Frame indices where a new shot starts (never 0), for RGB frames in presentation order.

    `threshold` is the adaptive ratio a frame's change must exceed over its neighbours';
    `min_shot_frames` is the shortest shot the detector reports (closer cuts are dropped).
    """
    detector = AdaptiveDetector(
        adaptive_threshold=threshold,
        min_scene_len=min_shot_frames,
        min_content_val=MIN_CONTENT_CHANGE,
    )
    rate = float(fps) if fps else 25.0
    cuts: list[FrameTimecode] = []
    last = None
    for index, frame in enumerate(frames):
        last = FrameTimecode(index, rate)
        cuts.extend(detector.process_frame(last, small_frame(frame)))
    if last is not None:
        cuts.extend(detector.post_process(last))
    return tuple(sorted({c.frame_num for c in cuts if c.frame_num > 0}))


def _frames_of(path: Path, info: MediaInfo) -> Iterator[np.ndarray]:
    """Every frame of the clip, one chunk in memory at a time."""
    with read_chunks(path, READ_CHUNK_FRAMES, info=info) as reader:
        for chunk in reader:
            yield from chunk.frames


def detect_cuts(
    path: Path, info: MediaInfo, *, threshold: float, min_shot_frames: int
) -> tuple[int, ...]:
    """The hard cuts of the probed clip at `path`: frame indices where a shot starts (one read).

    Raises:
        BadInput: the file cannot be read (from the probe or the reader).
    """
    frames = _frames_of(Path(path), info)
    return find_cuts(frames, info.fps, threshold=threshold, min_shot_frames=min_shot_frames)
