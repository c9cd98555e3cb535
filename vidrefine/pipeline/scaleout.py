"""A batch across the ranks torchrun started: files handed out, or every rank on each clip.

`--parallel files` hands whole clips out dynamically, longest first (`distributed.hand_out`):
a rank that finishes takes the next one, each clip is refined by exactly one rank, which writes
its output. `windows`, `guidance` and `sequence` (and `guidance+sequence`) put every rank on
each clip in turn (`vidrefine.pipeline.lockstep`). `auto` picks files when there are at least
as many clips as ranks, windows otherwise. Results are shared so that every rank returns the
whole batch, in job order, with one `RankReport` per rank for the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vidrefine.errors import BadInput
from vidrefine.plan.clip import ClipPlan
from vidrefine.plan.ranks import LAYOUT_MODES, layout_for
from vidrefine.runtime.distributed import all_gather, hand_out, rank_info

PARALLEL_MODES = ("auto", *LAYOUT_MODES)

# One pending clip: (ClipJob, its plan, its resume key); its outcome: JobResult or JobFailure.
Pending = tuple[Any, ClipPlan, str]
RefineOne = Callable[[Any, ClipPlan, str], Any]
Lockstep = Callable[[Any, ClipPlan, str, str], Any]  # ... and the mode


@dataclass(frozen=True)
class RankReport:
    """What one rank did in a batch: clips refined, frames written, wall seconds, peak memory."""

    rank: int
    clips: int = 0
    frames: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    outputs: tuple[str, ...] = ()

    def line(self) -> str:
        """'rank 1: 2 clips, 98 frames, 12.3 s, peak 1.20 GB'."""
        clips = f"{self.clips} clip{'s' * (self.clips != 1)}"
        peak = f"peak {self.peak_memory_bytes / 1e9:.2f} GB"
        return f"rank {self.rank}: {clips}, {self.frames} frames, {self.seconds:.1f} s, {peak}"


def check_parallel(parallel: str) -> str:
    """`parallel` if it is one of PARALLEL_MODES ('sequence+guidance' is read as its twin)."""
    if parallel == "sequence+guidance":
        parallel = "guidance+sequence"
    if parallel not in PARALLEL_MODES:
        raise BadInput(f"parallel mode {parallel!r} is not one of {', '.join(PARALLEL_MODES)}")
    return parallel


def choose_mode(parallel: str, clips: int, world_size: int) -> str:
    """The mode a batch of `clips` runs in on `world_size` ranks ("single" for one rank): the
    rule the plan's `layout_for` applies.
    """
    parallel = check_parallel(parallel)
    if world_size == 1:
        return "single"
    return layout_for(parallel, world_size, clips).mode


def clip_cost(plan: ClipPlan) -> int:
    """Work of a clip, for ordering: windows times output pixels."""
    height, width = plan.geometry.output_hw
    return len(plan.windows) * height * width


def longest_first(pending: Sequence[Pending]) -> list[int]:
    """Indices of `pending`, the costliest clip first (ties keep the batch order)."""
    return sorted(range(len(pending)), key=lambda i: (-clip_cost(pending[i][1]), i))


def refine_pending(
    pending: Sequence[Pending], refine_one: RefineOne, *, parallel: str, lockstep: Lockstep
) -> tuple[list[Any], list[RankReport]]:
    """Refine every pending clip across the ranks; every rank gets all outcomes, in order.

    Args:
        pending: the clips still to refine, the same list on every rank.
        refine_one: refines one clip on this rank alone (returns JobResult or JobFailure).
        parallel: one of PARALLEL_MODES.
        lockstep: refines one clip with every rank taking part, in the mode it is given.

    Returns:
        The outcomes in the order of `pending` and one report per rank, in rank order.
    """
    info = rank_info()
    mode = choose_mode(parallel, len(pending), info.world_size)
    start = time.perf_counter()
    if mode in ("single", "files"):  # one process keeps the batch order, as without torchrun
        order = longest_first(pending) if mode == "files" else list(range(len(pending)))
        worked = mine = {j: refine_one(*pending[j]) for _, j in hand_out(order)}
    else:
        worked = {i: lockstep(*item, mode) for i, item in enumerate(pending)}
        mine = worked if info.is_main else {}  # every rank took part; rank 0 reports each clip
    report = _report(info.rank, worked.values(), mine.values(), time.perf_counter() - start)
    shared = all_gather((mine, report))
    outcomes: dict[int, Any] = {}
    for part, _ in shared:
        outcomes |= part
    return [outcomes[i] for i in range(len(pending))], [rank_report for _, rank_report in shared]


def _report(rank: int, worked: Any, written: Any, seconds: float) -> RankReport:
    """A rank's report: the clips it `worked` on (failures count, without frames) and the
    outputs it `written` (in the lockstep modes every rank works on each clip, rank 0 writes).
    """
    done = list(worked)
    frames = sum(getattr(outcome, "frames", 0) for outcome in done)
    peak = max((getattr(outcome, "peak_memory_bytes", 0) for outcome in done), default=0)
    outputs = tuple(str(outcome.job.output) for outcome in written)
    return RankReport(rank, len(done), frames, seconds, peak, outputs)


def lockstep_refiner(refiner: Any, *, overwrite: bool, resume: bool) -> Lockstep:
    """A `lockstep` for `refine_pending`: every rank on one clip (vidrefine.pipeline.lockstep).

    The split refiner of the guidance and sequence modes (its process groups) is made on the
    first clip and serves the batch's other clips.
    """
    split: dict[str, Any] = {}

    def refine(clip: Any, plan: ClipPlan, key: str, mode: str) -> Any:
        from vidrefine.pipeline.lockstep import refine_across_ranks, split_refiner

        if mode != "windows" and mode not in split:
            split[mode] = split_refiner(refiner, mode)
        return refine_across_ranks(
            split.get(mode, refiner),
            clip.job,
            plan,
            clip.info,
            mode=mode,
            overwrite=overwrite,
            resume=resume,
            key=key,
        )

    return refine
