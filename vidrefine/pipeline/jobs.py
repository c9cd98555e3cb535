"""One clip job and what became of it: `RefineJob`, `JobResult`, the file job's resume key and
the check that skips an output this very job already made (`finished_output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vidrefine.captions import Captions, captions_for_shots
from vidrefine.config import RunConfig
from vidrefine.errors import OutputExists
from vidrefine.io.atomic import REPLACE_HINT
from vidrefine.io.writer import job_tag
from vidrefine.pipeline.resume import file_identity, resume_key
from vidrefine.plan.clip import ClipPlan
from vidrefine.plan.shots import Shot
from vidrefine.progress import Progress
from vidrefine.runtime.device import torch_dtype


@dataclass(frozen=True)
class RefineJob:
    """One clip to refine: where from, where to, and its caption.

    `captions`: a captions file's cues (one caption per shot, `vidrefine/captions.py`);
    `caption` is then used where the file gives none (a shot under an empty cue).
    """

    input: Path
    output: Path
    caption: str
    captions: Captions | None = None

    def shot_captions(self, plan: ClipPlan) -> tuple[str, ...]:
        """The caption of each shot of `plan` (each segment of its windows), in order."""
        shots = plan.shots or (Shot(0, plan.source.frame_count, 0.0, 0.0),)
        if self.captions is None:
            return (self.caption,) * len(shots)
        spans = [(shot.start_s, shot.end_s) for shot in shots]
        return captions_for_shots(self.captions.cues, spans, self.caption)

    def identity(self, plan: ClipPlan) -> dict:
        """What identifies the job in its resume key: the input file and every caption used."""
        identity = {"input": file_identity(self.input), "caption": self.caption}
        if self.captions is not None:
            identity["shot_captions"] = list(self.shot_captions(plan))
        return identity


@dataclass
class JobResult:
    """What happened to one job (for the summary table).

    `skipped`: the output was already there, made by the same job (a rerun of a finished
    command); nothing was refined or written, and `frames` is 0.
    """

    job: RefineJob
    plan: ClipPlan
    frames: int = 0
    reused_windows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int = 0
    skipped: bool = False

    @property
    def windows(self) -> int:
        """Windows planned for the clip."""
        return len(self.plan.windows)

    @property
    def output_hw(self) -> tuple[int, int]:
        """Size of the written frames."""
        return self.plan.geometry.output_hw


def file_job_key(config: RunConfig, job: RefineJob, plan: ClipPlan, weights_identity: dict) -> str:
    """The resume key of a file job, with the precisions its plan places the models in.

    Equal to `ClipRefiner.job_key` of the same job on models loaded as `plan.models` says, but
    known before any model is loaded.
    """
    dtypes = (torch_dtype(plan.models.dtype), torch_dtype(plan.models.vae_dtype))
    return resume_key(config, job.identity(plan), plan, weights_identity, dtypes)


def finished_output(
    job: RefineJob, plan: ClipPlan, key: str, *, overwrite: bool, progress: Progress
) -> JobResult | None:
    """A skipped result when `job.output` was made by this very job (its tag is `key`).

    None when there is nothing to skip: no output yet, or `overwrite`. An existing output made
    by another job (other settings, input, caption or weights) or not by vidrefine at all raises
    OutputExists.
    """
    if overwrite or not job.output.exists():
        return None
    tag = job_tag(job.output)
    if tag == key:
        progress.info(f"{job.output.name}: already done with these settings, skipped")
        return JobResult(job, plan, skipped=True)
    made = "made with other settings (or input, caption or weights)" if tag else "already exists"
    raise OutputExists(f"{job.output}: {made}; {REPLACE_HINT}")
