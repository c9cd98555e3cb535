"""Batch runs: every clip probed and planned once, models loaded once, each distinct caption
encoded once, a failing clip reported while the others go on, a finished clip skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
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
    load_stage_two,
)
from vidrefine.pipeline.refine import (
    ClipRefiner,
    JobResult,
    RefineJob,
    file_job_key,
    finished_output,
)
from vidrefine.pipeline.resume import files_identity
from vidrefine.pipeline.steps import stage2_caption
from vidrefine.plan.clip import ClipPlan, ModelPlacement, SourceFacts, plan_batch
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.device import pick_device


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
            out.append(ClipJob(job, probe(job.input)))
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


def plan_jobs(
    clips: Sequence[ClipJob], config: RunConfig, device: torch.device
) -> tuple[ClipPlan, ...]:
    """One plan per clip, all with the model placement the largest needs (DoesNotFit stops)."""
    sources = [SourceFacts.of_media(clip.info) for clip in clips]
    return plan_batch(sources, config, device_facts(device))


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
        self.device = device or pick_device()
        self.progress = progress or NullProgress()
        self.states: dict[str, torch.Tensor] = {}
        self.models: StageTwoModels | None = None
        self.placement: ModelPlacement | None = None

    @functools.cached_property
    def identity(self) -> dict:
        """Fingerprints of the weight files (part of every resume key), taken once a session."""
        return files_identity(self.paths)

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
        models = load_stage_two(self.paths, placement, self.device)
        self.placement = placement
        return models

    def refine(
        self,
        jobs: Sequence[ClipJob | JobFailure],
        *,
        overwrite: bool = False,
        resume: bool = True,
    ) -> list[JobResult | JobFailure]:
        """Refine every prepared job; one that fails is reported and the others go on.

        Before any model is loaded, each existing output is compared with its job's resume key:
        one made by the same job is skipped (a rerun of a finished or interrupted batch goes on
        where it stopped); one made otherwise raises OutputExists, unless `overwrite`.
        """
        clips = [job for job in jobs if isinstance(job, ClipJob)]
        if not clips:
            return list(jobs)  # type: ignore[arg-type]
        plans = plan_jobs(clips, self.config, self.device)  # DoesNotFit stops before loading
        outcomes: dict[int, JobResult | JobFailure] = {}
        todo: list[tuple[ClipJob, ClipPlan, str]] = []
        for clip, plan in zip(clips, plans, strict=True):
            key = file_job_key(self.config, clip.job, plan, self.identity)
            done = finished_output(clip.job, plan, key, overwrite=overwrite, progress=self.progress)
            if done is not None:
                outcomes[id(clip)] = done
            else:
                todo.append((clip, plan, key))
        if todo:
            captions = [stage2_caption(self.config, clip.job.caption) for clip, _, _ in todo]
            refiner = self.refiner(plans[0].models, captions)
            for clip, plan, key in todo:
                outcomes[id(clip)] = _refine_one(
                    refiner, clip, plan, key, overwrite, resume, self.progress
                )
        return [outcomes.get(id(job), job) for job in jobs]  # type: ignore[misc]


def refine_files(
    jobs: Sequence[RefineJob | ClipJob | JobFailure],
    config: RunConfig,
    paths: Mapping[str, Path],
    *,
    overwrite: bool = False,
    resume: bool = True,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> list[JobResult | JobFailure]:
    """Refine every job with models loaded once; a job that fails is reported, the others go on.

    Plain `RefineJob`s are checked and probed here; `ClipJob`s (and failures) come from a
    caller that did it already (the CLI does, before it looks for weights).
    """
    if all(isinstance(job, RefineJob) for job in jobs):
        jobs = prepare_jobs(jobs, overwrite=overwrite)  # type: ignore[arg-type]
    session = StageTwoSession(paths, config, device=device, progress=progress)
    return session.refine(jobs, overwrite=overwrite, resume=resume)  # type: ignore[arg-type]


def _refine_one(
    refiner: ClipRefiner,
    clip: ClipJob,
    plan: ClipPlan,
    key: str,
    overwrite: bool,
    resume: bool,
    progress: Progress,
) -> JobResult | JobFailure:
    progress.info(f"{clip.job.input.name}: {plan.line()}")
    try:
        return refiner.refine_file(
            clip.job, plan, clip.info, overwrite=overwrite, resume=resume, key=key
        )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted during {clip.job.input.name}; finished windows are kept, "
            "run the same command again to resume"
        ) from None
    except VidrefineError as exc:
        progress.warn(f"{clip.job.input}: {exc}")
        return JobFailure(clip.job, str(exc), exc)
