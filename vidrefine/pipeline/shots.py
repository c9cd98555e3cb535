"""Shots and captions of a probed clip, found once when its job is planned.

`clip_source` runs shot detection (`io/shots.py`) when the config asks for it, so the plan cuts
windows per shot; `check_captions` checks a job's captions file against the clip it was given
for (cues past the end are an error, gaps and empty cues are warnings).
"""

from __future__ import annotations

import warnings

from vidrefine.captions import check_cues
from vidrefine.config import RunConfig
from vidrefine.io.probe import MediaInfo
from vidrefine.io.shots import detect_cuts
from vidrefine.pipeline.refine import RefineJob
from vidrefine.plan.clip import SourceFacts
from vidrefine.plan.shots import MIN_SHOT_FRAMES

FALLBACK_FPS = 25.0  # for a clip whose probe found no frame rate


class CaptionsWarning(UserWarning):
    """A captions file leaves part of the clip uncaptioned, or has an empty caption."""


def clip_source(info: MediaInfo, config: RunConfig) -> SourceFacts:
    """The planning facts of a probed clip, with its hard cuts when `config.shots` is on.

    Detection decodes the clip once (a small fraction of one window's refinement).
    """
    if not config.shots:
        return SourceFacts.of_media(info)
    cuts = detect_cuts(
        info.path, info, threshold=config.cut_threshold, min_shot_frames=MIN_SHOT_FRAMES
    )
    return SourceFacts.of_media(info, cuts)


def check_captions(job: RefineJob, info: MediaInfo) -> None:
    """Check `job`'s captions file against its probed clip; warnings go out as CaptionsWarning.

    Raises:
        BadInput: cues overlap, or one ends past the clip (a file for another clip?).
    """
    if job.captions is None:
        return
    fps = float(info.fps) if info.fps else FALLBACK_FPS
    duration_s = info.frame_count / fps
    for line in check_cues(job.captions.cues, duration_s, job.captions.source, 1 / fps):
        warnings.warn(line, CaptionsWarning, stacklevel=2)
