"""One clip refined by every rank at once, with the output of the one-process run.

"windows": the clip's windows go round-robin to the ranks (rounds of N consecutive windows,
`plan.ranks.window_rank`) and advance in lockstep. After every Euler step a rank hands the
overlap latents of its window to the rank holding the next window (point-to-point), which
fuses with them exactly as `ClipRefiner._sample` fuses with the previous window's trajectory in
one process; the last window of a round hands its states to the first of the next round. The
DiT passes of a round run side by side; only the small overlap hand-over is sequential. Rank 0
receives every decoded window in order and cross-fades and writes them (`ClipRefiner.emit`,
`ClipRefiner.write_pieces`), so the file is bit-identical to the one-process file. Each rank
keeps the windows it made in the resume store and reuses whatever is there on a rerun, with
any number of ranks.

"guidance", "sequence", "guidance+sequence": every rank runs each window, its DiT passes split
over the ranks (`runtime.guidance_parallel`) and the tiles of its VAE passes handed out to them
(`pipeline.tile_share`); rank 0 keeps the resume store and writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vidrefine.config import STAGE2_DIT
from vidrefine.errors import BadInput
from vidrefine.io.probe import MediaInfo
from vidrefine.io.reader import read_chunks
from vidrefine.pipeline.rank_link import Link
from vidrefine.pipeline.refine import (
    READ_CHUNK_FRAMES,
    ClipRefiner,
    JobResult,
    RefineJob,
    WindowCarry,
    finished_output,
)
from vidrefine.pipeline.resume import JobStore
from vidrefine.pipeline.tile_share import RankTileShare
from vidrefine.plan.clip import ClipPlan
from vidrefine.plan.ranks import LAYOUT_MODES, RankLayout, window_rank
from vidrefine.plan.windows import WindowFrames, slice_windows
from vidrefine.runtime.device import peak_memory_bytes
from vidrefine.runtime.guidance_parallel import ParallelDiT, pass_groups

MODES = tuple(mode for mode in LAYOUT_MODES if mode != "files")  # every rank on one clip
Pieces = Iterator[tuple[np.ndarray, np.ndarray]]


def refine_across_ranks(
    refiner: ClipRefiner,
    job: RefineJob,
    plan: ClipPlan,
    info: MediaInfo,
    *,
    mode: str,
    overwrite: bool,
    resume: bool,
    key: str | None = None,
    group: dist.ProcessGroup | None = None,
) -> JobResult:
    """Refine `job` with every rank of `group` (default: all) taking part; rank 0 writes.

    Every rank calls this with the same arguments. An output already made by this job is
    skipped on every rank (rank 0 decides). Returns this rank's result: on rank 0 the frames
    written, elsewhere the windows this rank made.
    """
    if mode not in MODES:
        raise BadInput(f"lockstep mode {mode!r} is not one of {', '.join(MODES)}")
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return refiner.refine_file(job, plan, info, overwrite=overwrite, resume=resume, key=key)
    link = Link(group)
    if key is None:
        key = refiner.job_key(job.identity(plan), plan)
    done = link.agree(
        lambda: finished_output(job, plan, key, overwrite=overwrite, progress=refiner.progress)
    )
    if done is not None:
        return done
    store: Any = JobStore(key, warn=refiner.progress.warn)
    if mode != "windows":
        refiner, store = split_refiner(refiner, mode), _MainStore(store, link)
    if not resume and link.rank == 0:
        store.clear()
    link.barrier()  # nobody keeps a window before a fresh start has cleared the store
    result = JobResult(job, plan)
    chunks = ((c.frames, c.pts) for c in read_chunks(job.input, READ_CHUNK_FRAMES, info=info))
    if mode == "windows":
        pieces = _lockstep_pieces(refiner, plan, job, chunks, store, result, link)
    else:
        captions = job.shot_captions(plan)
        pieces = refiner.stream(chunks, plan, captions, store=store, result=result)
    if link.rank == 0:
        refiner.write_pieces(
            pieces, job, plan, result, key=key, audio_from=job.input, overwrite=overwrite
        )
    else:
        _drain(pieces)  # the other ranks work, rank 0 writes
    link.finish()
    store.clear()
    if mode == "windows":  # rank 0 reports the windows every rank reused
        result.reused_windows = link.total(result.reused_windows)
    result.peak_memory_bytes = peak_memory_bytes(refiner.models.device)
    return result


def _drain(pieces: Iterable[object]) -> None:
    for _ in pieces:
        pass


class _MainStore:
    """The resume store kept by rank 0 alone; each window's lookup is agreed by every rank."""

    def __init__(self, store: JobStore, link: Link) -> None:
        self.store, self.link = store, link

    def load_window(self, index: int) -> dict[str, torch.Tensor] | None:
        return self.link.agree(lambda: self.store.load_window(index))

    def save_window(self, index: int, tensors: dict[str, torch.Tensor]) -> None:
        if self.link.rank == 0:
            self.store.save_window(index, tensors)

    def clear(self) -> None:
        if self.link.rank == 0:
            self.store.clear()


def split_refiner(refiner: ClipRefiner, mode: str) -> ClipRefiner:
    """A refiner whose DiT passes are split over every rank as `mode` says (2 x k ranks), and
    whose VAE passes hand the window's tiles out to every rank (`pipeline.tile_share`);
    `refiner` itself when it is one already.

    Building one creates process groups (collectively, on every rank), which live until the
    process group is destroyed: make it once for a batch (`scaleout.lockstep_refiner` does).
    """
    if isinstance(refiner.models.dit, ParallelDiT):
        return refiner
    layout = RankLayout(mode, dist.get_world_size())  # BadInput for a world the mode cannot use
    groups = pass_groups(layout.guidance_ranks, layout.sequence_ranks)
    dit = ParallelDiT(refiner.models.dit, groups)
    share = RankTileShare(Link(None))  # the window's VAE tiles over every rank
    return ClipRefiner(
        dataclasses.replace(refiner.models, dit=dit, vae_share=share),
        refiner.config,
        refiner.embeddings,
        progress=refiner.progress,
        weights_identity=refiner.weights_identity,
    )


def _rounds(windows: Iterable[WindowFrames], size: int) -> Iterator[list[WindowFrames]]:
    """Rounds of `size` consecutive windows (the last may be shorter)."""
    batch: list[WindowFrames] = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _lockstep_pieces(
    refiner: ClipRefiner,
    plan: ClipPlan,
    job: RefineJob,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    store: JobStore,
    result: JobResult,
    link: Link,
) -> Pieces:
    """Rank 0: the clip's output pieces, in order; other ranks: nothing (they send frames).

    As `ClipRefiner.stream`: each shot (window segment) has its caption, and windows fuse and
    cross-fade only within a shot.
    """
    captions = job.shot_captions(plan)
    tail = WindowCarry()  # rank 0's decoded tail, as in `ClipRefiner.stream`
    frames_shape = (plan.windowing.frames, *plan.geometry.output_hw, 3)
    before: WindowFrames | None = None  # the window before each round
    with refiner.progress.task("windows", total=len(plan.windows), unit="window") as bar:
        for batch in _rounds(slice_windows(chunks, plan.windowing, plan.windows), link.size):
            frames, handed = None, None
            if link.rank < len(batch):
                window = batch[link.rank]
                fused = ([before] + batch)[link.rank]  # the window before this rank's
                context = refiner.window_context(window, captions)
                joined = fused is not None and not fused.is_last
                frames, handed = _window(
                    refiner, window, plan, context, (store, result, link), joined=joined
                )
            before = batch[-1]
            if link.rank:
                if frames is not None:
                    link.send(torch.from_numpy(frames), 0)
                if handed is not None:  # to the next round: after the frames, as rank 0 reads
                    handed.finish()
                continue
            if handed is not None:
                handed.finish()
            for holder, window in enumerate(batch):
                if holder:
                    frames = link.recv(frames_shape, torch.uint8, holder).numpy()
                yield refiner.emit(window, frames, plan, tail, result)
                if window.is_last:  # the shot ends: the next one cross-fades with nothing
                    tail = WindowCarry()
                bar.advance()


def _window(
    refiner: ClipRefiner,
    window: WindowFrames,
    plan: ClipPlan,
    context: torch.Tensor,
    run: tuple[JobStore, JobResult, Link],
    *,
    joined: bool,
) -> tuple[np.ndarray, _Handover | None]:
    """This rank's window of a round, fused with and feeding its neighbours step by step.

    `joined`: the window fuses with the one before (same shot). Returns the decoded frames and
    the hand-over to the next window, whose `finish` sends the states not sent while sampling
    (all of them for a reused window, or for a next window in the next round: rank 0 reads
    this rank's frames first).
    """
    store, result, link = run
    index = window.index
    previous = None
    if joined:
        previous = _Trajectory(link, window_rank(index - 1, link.size), plan, refiner)
    handed = None
    if not window.is_last:  # the last window of a shot feeds nothing
        holder = window_rank(index + 1, link.size)
        handed = _Handover(link, holder, defer=holder == 0)
    carry = WindowCarry(trajectory=previous)  # type: ignore[arg-type]
    frames = refiner.refine_window(window, plan, context, store, carry, result, share=handed)
    if previous is not None:
        previous.drain()  # a reused window fuses with nothing, but its states still come
    if handed is not None:
        handed.trajectory = carry.trajectory
    return frames, handed


class _Trajectory:
    """The previous window's overlap states, received from its rank as they are indexed."""

    def __init__(self, link: Link, holder: int, plan: ClipPlan, refiner: ClipRefiner) -> None:
        self.link, self.holder = link, holder
        self.states: list[torch.Tensor] = []
        self.total = refiner.config.steps + 1
        hw = plan.geometry.latent_hw
        self.shape = (1, plan.windowing.overlap_latent, STAGE2_DIT.in_channels, *hw)
        self.dtype = refiner.models.dtype

    def __getitem__(self, index: int) -> torch.Tensor:
        while len(self.states) <= index:
            self.states.append(self.link.recv(self.shape, self.dtype, self.holder))
        return self.states[index]

    def __len__(self) -> int:
        return self.total

    def drain(self) -> None:
        """Receive whatever states have not been asked for (they were sent all the same)."""
        self[self.total - 1]


class _Handover:
    """Sends this window's overlap states to the rank of the next window, each once, in order.

    `defer`: send nothing while sampling, everything at `finish`.
    """

    def __init__(self, link: Link, holder: int, *, defer: bool) -> None:
        self.link, self.holder, self.defer, self.sent = link, holder, defer, 0
        self.trajectory: torch.Tensor | None = None  # (steps + 1, B, O, C, h, w), once made

    def __call__(self, index: int, state: torch.Tensor) -> None:
        if self.defer:
            return
        self.link.send(state, self.holder)
        self.sent = index + 1

    def finish(self) -> None:
        """Send the states of the window's trajectory not sent while sampling."""
        self.defer = False
        made = 0 if self.trajectory is None else len(self.trajectory)
        for index in range(self.sent, made):
            self(index, self.trajectory[index])
