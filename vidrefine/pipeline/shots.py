"""Shots and captions of a probed clip, found once when its job is planned.

`clip_source` runs shot detection (`io/shots.py`) when the config asks for it, so the plan cuts
windows per shot; `check_captions` checks a job's captions file against the clip it was given
for (cues past the end are an error, gaps and empty cues are warnings).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from vidrefine.captions import check_cues
from vidrefine.config import RunConfig
from vidrefine.io.probe import MediaInfo
from vidrefine.plan.clip import SourceFacts
from vidrefine.plan.shots import MIN_SHOT_FRAMES, Shot, plan_shots

if TYPE_CHECKING:  # importing it would load torch, which `info --shots` does not need
    from vidrefine.pipeline.jobs import RefineJob

FALLBACK_FPS = 25.0  # for a clip whose probe found no frame rate


class CaptionsWarning(UserWarning):
    """A captions file leaves part of the clip uncaptioned, or has an empty caption."""


def clip_source(info: MediaInfo, config: RunConfig) -> SourceFacts:
    """The planning facts of a probed clip, with its hard cuts when `config.shots` is on.

    Detection decodes the clip once (a small fraction of one window's refinement); the cuts are
    kept for the process, so captioning and then refining a clip (`--caption auto`, the web
    page) decode it for them once.
    """
    if not config.shots:
        return SourceFacts.of_media(info)
    return SourceFacts.of_media(info, _cuts(info, config.cut_threshold))


def planned_shots(info: MediaInfo, config: RunConfig) -> tuple[Shot, ...] | None:
    """The shots `upscale` refines the probed clip in, cut as `config` says (`shots`,
    `cut_threshold`); None when `config` turns detection off (the clip is one run of windows).
    """
    if not config.shots:
        return None
    source = clip_source(info, config)
    return plan_shots(source.cuts, source.frame_count, source.fps)


_CUTS: dict[tuple, tuple[int, ...]] = {}


def _cuts(info: MediaInfo, threshold: float) -> tuple[int, ...]:
    """`detect_cuts` of the clip, once per file version and threshold in this process."""
    stat = info.path.stat()
    key = (str(info.path.resolve()), stat.st_size, stat.st_mtime_ns, threshold)
    if key not in _CUTS:
        from vidrefine.io.shots import detect_cuts  # PySceneDetect: only when shots are on

        _CUTS[key] = detect_cuts(
            info.path, info, threshold=threshold, min_shot_frames=MIN_SHOT_FRAMES
        )
    return _CUTS[key]


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
