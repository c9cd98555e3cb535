"""Where a refined clip may show seams: window starts and shot cuts, kept in its metadata.

`refine.py` writes them as container tags (`plan_tags`) beside the job tag; `read_marks` finds
them again, so `vidrefine compare` can mark them on its plots. Outputs made elsewhere have none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from vidrefine.io.writer import JOB_TAG, container_tags
from vidrefine.plan.clip import ClipPlan

WINDOWS_TAG = "vidrefine_windows"  # "0,8,16": first frame of each window after the first
CUTS_TAG = "vidrefine_cuts"  # "98,154": first frame of each shot after the first


@dataclass(frozen=True)
class Marks:
    """Frame indices where a window starts (its cross-fade begins) and where a shot starts."""

    windows: tuple[int, ...] = field(default_factory=tuple)
    cuts: tuple[int, ...] = field(default_factory=tuple)


def plan_marks(plan: ClipPlan) -> Marks:
    """The window starts and shot starts of a plan (segments number shots, when it has them)."""
    windows = plan.windows
    starts = tuple(w.start_frame for w in windows[1:])
    cuts = tuple(w.start_frame for before, w in pairwise(windows) if w.segment != before.segment)
    return Marks(tuple(s for s in starts if s not in cuts), cuts)


def plan_tags(plan: ClipPlan) -> dict[str, str]:
    """`plan_marks` as container tags (compact comma lists)."""
    marks = plan_marks(plan)
    return {
        WINDOWS_TAG: ",".join(map(str, marks.windows)),
        CUTS_TAG: ",".join(map(str, marks.cuts)),
    }


def _numbers(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        return ()  # not ours after all: no marks rather than a failure


def read_marks(path: str | Path) -> Marks | None:
    """The marks kept in a vidrefine output's tags; None when it has none (made elsewhere)."""
    tags = container_tags(path)
    if not {WINDOWS_TAG, CUTS_TAG, JOB_TAG} & set(tags):
        return None
    return Marks(_numbers(tags.get(WINDOWS_TAG)), _numbers(tags.get(CUTS_TAG)))
