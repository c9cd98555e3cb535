"""Batch runs: every clip probed and planned once, models loaded once, each distinct caption
encoded once, a failing clip reported while the others go on, a finished clip skipped.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vidrefine.config import RunConfig
from vidrefine.errors import Interrupted, VidrefineError
from vidrefine.io.probe import MediaInfo, probe
from vidrefine.io.writer import check_output_or_tagged
from vidrefine.pipeline.devices import device_facts
from vidrefine.pipeline.loading import (
    T5_FOLDER,
    StageTwoModels,
    encode_captions,
    found_model_sizes,
    load_stage_two,
    lora_specs,
    with_adapters,
)
from vidrefine.pipeline.refine import (
    ClipRefiner,
    JobResult,
    RefineJob,
    file_job_key,
    finished_output,
)
from vidrefine.pipeline.resume import files_identity
from vidrefine.pipeline.scaleout import (
    RankReport,
    check_parallel,
    lockstep_refiner,
    refine_pending,
)
from vidrefine.pipeline.shots import check_captions, clip_source
from vidrefine.pipeline.steps import stage2_caption
from vidrefine.plan.clip import ClipPlan, ModelPlacement, SourceFacts, plan_batch
from vidrefine.plan.model_sizes import ModelSizes
from vidrefine.plan.ranks import layout_for
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.distributed import barrier, init_distributed, rank_device, rank_info


@dataclass(frozen=True)
class ClipJob:
    """A job whose output was checked and whose input was probed (once each)."""

    job: RefineJob
    info: MediaInfo


@dataclass
class JobFailure:
    """A job that did not finish, with the one-line reason (and the error, when one was raised)."""

    job: RefineJob
    error: str
    cause: VidrefineError | None = None


def probe_jobs(jobs: Sequence[RefineJob]) -> list[ClipJob | JobFailure]:
    """Probe every input once; one that cannot be read becomes a failure, the others go on."""
    out: list[ClipJob | JobFailure] = []
    for job in jobs:
        try:
            info = probe(job.input)
            check_captions(job, info)  # a captions file for another clip fails here
            out.append(ClipJob(job, info))
        except VidrefineError as exc:
            out.append(JobFailure(job, str(exc), exc))
    return out


def prepare_jobs(jobs: Sequence[RefineJob], *, overwrite: bool) -> list[ClipJob | JobFailure]:
    """Check every output (raises on the first unusable one) and probe every input.

    An existing output that vidrefine made passes: the session skips it when the same job made
    it and refuses it otherwise (`StageTwoSession.refine`).
    """
    for job in jobs:
        check_output_or_tagged(job.input, job.output, overwrite=overwrite)
    return probe_jobs(jobs)


@dataclass(frozen=True)
class BatchPlans:
    """A batch's clips as the planner sees them (shots detected once) and the ranks they share.

    A rerun plans the clips still to refine again, for how many they are: with fewer clips left
    than ranks, "auto" lays them out as windows instead of files. The model placement stays the
    whole batch's (and files and windows plan the same memory), so the resume keys of the whole
    batch's plans still hold.
    """

    sources: tuple[SourceFacts, ...]
    parallel: str  # a PARALLEL_MODES name
    ranks: int

    @classmethod
    def of(cls, clips: Sequence[ClipJob], config: RunConfig, parallel: str) -> BatchPlans:
        """Shots are detected here, once per clip, when the config asks for them."""
        sources = tuple(clip_source(clip.info, config) for clip in clips)
        return cls(sources, check_parallel(parallel), rank_info().world_size)

    def plan(
        self,
        config: RunConfig,
        device: torch.device,
        offload: str | None = None,
        *,
        weights: ModelSizes | None = None,
    ) -> tuple[ClipPlan, ...]:
        """Every clip's plan, all with the model placement the largest needs (DoesNotFit stops
        here), or with the streaming choice `offload` (`plan_batch`); `weights`: the sizes of
        the weight files found (None: the official ones).
        """
        layout = layout_for(self.parallel, self.ranks, len(self.sources))
        facts = device_facts(device, weights)
        return plan_batch(self.sources, config, facts, layout, offload)

    def subset(self, picked: Sequence[int]) -> BatchPlans:
        """The clips `picked` (indices) of this batch."""
        return dataclasses.replace(self, sources=tuple(self.sources[i] for i in picked))


class StageTwoSession:
    """Stage II loaded once and reused: caption states and models, as the plans place them.

    New captions go through T5 before the models are (re)loaded. With layer streaming (a plan
    for a tight device) loaded models are released first, so T5 never shares the device with
    them; otherwise they stay loaded. Models are reloaded only when a plan places them
    differently (another precision or streaming choice).
    """

    def __init__(
        self,
        paths: Mapping[str, Path],
        config: RunConfig,
        *,
        device: torch.device | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.paths, self.config = paths, config
        self.lora = lora_specs(config)  # the adapter files are there, before any work
        self.device = device or rank_device()
        self.progress = progress or NullProgress()
        self.states: dict[str, torch.Tensor] = {}
        self.models: StageTwoModels | None = None
        self.placement: ModelPlacement | None = None
        self.rank_reports: list[RankReport] = []  # what each rank did in the last `refine`

    @functools.cached_property
    def identity(self) -> dict:
        """Fingerprints of the weight files and adapters (part of every resume key), taken once
        a session.
        """
        return files_identity(with_adapters(self.paths, self.lora))

    @functools.cached_property
    def sizes(self) -> ModelSizes:
        """The sizes of the weight files (what the memory plans are made of), read once."""
        return found_model_sizes(self.paths)

    def share_loaded(self, other: StageTwoSession) -> None:
        """Use `other`'s caption states, loaded models and weight fingerprints: a session on
        the same weight files with other settings (models reload only if placed otherwise, or
        if the other settings merge other LoRA adapters).
        """
        self.states = other.states
        if self.lora == other.lora:
            self.models, self.placement = other.models, other.placement
            self.__dict__["identity"] = other.identity  # the cached_property's slot, taken once

    def refiner(self, placement: ModelPlacement, captions: Sequence[str]) -> ClipRefiner:
        """A refiner whose models follow `placement` and know every caption (already prefixed)."""
        new = [c for c in dict.fromkeys(captions) if c not in self.states]
        if new and placement.offload == "layer":
            self.models = None  # T5 gets the device alone (spec §7)
        if new:
            folder = self.paths[T5_FOLDER]
            self.states |= encode_captions(folder, new, placement, self.device, self.progress)
        if self.models is None or self.placement != placement:
            self.models = None  # the old models leave before the new ones load
            self.models = self._load(placement)
        return ClipRefiner(
            self.models,
            self.config,
            self.states.__getitem__,
            progress=self.progress,
            weights_identity=self.identity,
        )

    def _load(self, placement: ModelPlacement) -> StageTwoModels:
        if self.device.type == "cpu" and {placement.dtype, placement.vae_dtype} != {"fp32"}:
            self.progress.warn("half precision on the CPU is very slow; pass --dtype fp32 there")
        models = load_stage_two(self.paths, placement, self.device, self.lora)
        self.placement = placement
        return models

    def refine(
        self,
        jobs: Sequence[ClipJob | JobFailure],
        *,
        overwrite: bool = False,
        resume: bool = True,
        parallel: str = "auto",
    ) -> list[JobResult | JobFailure]:
        """Refine every prepared job; one that fails is reported and the others go on.

        Before any model is loaded, each existing output is compared with its job's resume key:
        one made by the same job is skipped (a rerun of a finished or interrupted batch goes on
        where it stopped); one made otherwise raises OutputExists, unless `overwrite`.

        Under torchrun every rank runs this with the same jobs, and the clips are spread as
        `parallel` says (`vidrefine.pipeline.scaleout`); every rank returns the whole batch.
        """
        clips = [job for job in jobs if isinstance(job, ClipJob)]
        if not clips:
            return list(jobs)  # type: ignore[arg-type]
        batch = BatchPlans.of(clips, self.config, parallel)
        plans = batch.plan(self.config, self.device, weights=self.sizes)  # DoesNotFit: here
        keys = [self._key(clip, plan) for clip, plan in zip(clips, plans, strict=True)]
        outcomes = self._finished(clips, plans, keys, overwrite)
        left = [i for i, clip in enumerate(clips) if id(clip) not in outcomes]
        init_distributed(self.device.type)
        barrier()  # every rank has looked at the outputs before any rank writes one
        self.rank_reports = []
        if left:
            if len(left) < len(clips):  # laid out for the clips left; the keys stay
                offload = plans[0].models.offload
                plans = batch.subset(left).plan(
                    self.config, self.device, offload, weights=self.sizes
                )
            todo = [(clips[i], plan, keys[i]) for i, plan in zip(left, plans, strict=True)]
            captions = [
                stage2_caption(self.config, caption)
                for clip, plan, _ in todo
                for caption in clip.job.shot_captions(plan)
            ]
            refiner = self.refiner(plans[0].models, captions)
            done = self._refine_pending(refiner, todo, overwrite, resume, batch.parallel)
            outcomes |= {
                id(clip): outcome for (clip, _, _), outcome in zip(todo, done, strict=True)
            }
        return [outcomes.get(id(job), job) for job in jobs]  # type: ignore[misc]

    def _finished(
        self,
        clips: Sequence[ClipJob],
        plans: Sequence[ClipPlan],
        keys: Sequence[str],
        overwrite: bool,
    ) -> dict[int, JobResult | JobFailure]:
        """Skipped results of the clips whose output this very job made already, by id(clip)."""
        outcomes: dict[int, JobResult | JobFailure] = {}
        for clip, plan, key in zip(clips, plans, keys, strict=True):
            done = finished_output(clip.job, plan, key, overwrite=overwrite, progress=self.progress)
            if done is not None:
                outcomes[id(clip)] = done
        return outcomes

    def _key(self, clip: ClipJob, plan: ClipPlan) -> str:
        return file_job_key(self.config, clip.job, plan, self.identity)

    def _refine_pending(
        self,
        refiner: ClipRefiner,
        todo: list[tuple[ClipJob, ClipPlan, str]],
        overwrite: bool,
        resume: bool,
        parallel: str,
    ) -> list[JobResult | JobFailure]:
        """The outcome of every pending clip, refined alone by one rank or by all together."""
        lockstep = lockstep_refiner(refiner, overwrite=overwrite, resume=resume)

        def alone(clip: ClipJob, plan: ClipPlan, key: str) -> JobResult | JobFailure:
            self.progress.info(f"{clip.job.input.name}: {plan.line()}")
            return _guarded(
                clip,
                self.progress,
                lambda: refiner.refine_file(
                    clip.job, plan, clip.info, overwrite=overwrite, resume=resume, key=key
                ),
            )

        def together(clip: ClipJob, plan: ClipPlan, key: str, mode: str) -> JobResult | JobFailure:
            return _guarded(clip, self.progress, lambda: lockstep(clip, plan, key, mode))

        done, self.rank_reports = refine_pending(todo, alone, parallel=parallel, lockstep=together)
        return done


def refine_files(
    jobs: Sequence[RefineJob | ClipJob | JobFailure],
    config: RunConfig,
    paths: Mapping[str, Path],
    *,
    overwrite: bool = False,
    resume: bool = True,
    progress: Progress | None = None,
    device: torch.device | None = None,
    parallel: str = "auto",
) -> list[JobResult | JobFailure]:
    """Refine every job with models loaded once; a job that fails is reported, the others go on.

    Plain `RefineJob`s are checked and probed here; `ClipJob`s (and failures) come from a
    caller that did it already (the CLI does, before it looks for weights). Under torchrun the
    clips are spread over the ranks as `parallel` says (`StageTwoSession.refine`).
    """
    if all(isinstance(job, RefineJob) for job in jobs):
        jobs = prepare_jobs(jobs, overwrite=overwrite)  # type: ignore[arg-type]
    session = StageTwoSession(paths, config, device=device, progress=progress)
    return session.refine(jobs, overwrite=overwrite, resume=resume, parallel=parallel)  # type: ignore[arg-type]


def _guarded(
    clip: ClipJob, progress: Progress, run: Callable[[], JobResult]
) -> JobResult | JobFailure:
    """`run()`, with a failure reported as a JobFailure and Ctrl-C as Interrupted."""
    try:
        return run()
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted during {clip.job.input.name}; finished windows are kept, "
            "run the same command again to resume"
        ) from None
    except VidrefineError as exc:
        progress.warn(f"{clip.job.input}: {exc}")
        return JobFailure(clip.job, str(exc), exc)
