"""Batch runs: models loaded once, each distinct caption encoded once, a failing file reported.

T5 runs first for every caption and leaves the device before the DiT and VAE are loaded, so the
three models are never resident together (spec §7 sizes: T5-XXL encoder ~9.5 GB in bf16).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vidrefine.checkpoints import load_dit, load_vae
from vidrefine.config import RunConfig
from vidrefine.device import pick_device, resolve_dtype
from vidrefine.errors import Interrupted, VidrefineError
from vidrefine.jobs import file_identity
from vidrefine.models.text import TEXT_LENGTH, T5TextEncoder
from vidrefine.progress import NullProgress, Progress
from vidrefine.refine import JobResult, RefineJob, Refiner, StageTwoModels, stage2_caption
from vidrefine.speed import plan_run, prepare_dit

# names of the weight files a stage-II run needs (keys of the `paths` mapping)
VAE_FILE, STAGE2_FILE, T5_FOLDER = "3d-vae.pt", "stage2.pt", "t5-v1_1-xxl"


@dataclass
class JobFailure:
    """A job that did not finish, with the one-line reason."""

    job: RefineJob
    error: str


def encode_captions(
    t5_folder: Path,
    captions: Sequence[str],
    *,
    device: torch.device,
    dtype: torch.dtype,
    progress: Progress,
    stream: bool = False,
) -> dict[str, torch.Tensor]:
    """T5 states (1, 226, d) on the CPU for each distinct caption; T5 is freed afterwards.

    With `stream` (offload "layer") T5 is loaded on the host and its blocks visit `device` one
    at a time, so the encoder needs about 1 GB of GPU memory instead of 9.
    """
    distinct = list(dict.fromkeys(captions))
    load_on = torch.device("cpu") if stream else device
    encoder = T5TextEncoder.from_folder(t5_folder, dtype=dtype, device=load_on)
    if stream:
        encoder.stream_to(device)
    states: dict[str, torch.Tensor] = {}
    try:
        with progress.task("captions", total=len(distinct), unit="caption") as bar:
            for caption in distinct:
                encoded = encoder.encode([caption])
                if encoded.truncated[0]:
                    progress.warn(
                        f"caption has {encoded.token_counts[0]} tokens and was cut to "
                        f"{TEXT_LENGTH} (the T5 limit the models were trained with): "
                        f"{caption[:60]!r}..."
                    )
                states[caption] = encoded.embeddings[0:1].cpu()
                bar.advance()
    finally:
        encoder.release()
    return states


def load_stage_two(
    paths: Mapping[str, Path], config: RunConfig, device: torch.device
) -> StageTwoModels:
    """Load the VAE and the stage-II DiT in the configured precision."""
    dtype = resolve_dtype(config.dtype, device)
    vae_dtype = resolve_dtype(config.vae_dtype, device)
    vae = load_vae(paths[VAE_FILE], dtype=vae_dtype, device=device).eval()
    # streamed: loaded on the host, only non-block weights go to the GPU (never the whole DiT)
    load_on = torch.device("cpu") if config.offload == "layer" else device
    dit = load_dit(paths[STAGE2_FILE], dtype=dtype, device=load_on, stage=2).eval()
    dit, _streamer, _notes = prepare_dit(dit, config, device)  # layer offload, compile (issue 7)
    return StageTwoModels(vae=vae, dit=dit, device=device, dtype=dtype, vae_dtype=vae_dtype)


def refine_files(
    jobs: Sequence[RefineJob],
    config: RunConfig,
    paths: Mapping[str, Path],
    *,
    overwrite: bool = False,
    resume: bool = True,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> list[JobResult | JobFailure]:
    """Refine every job; a job that fails is reported and the others go on."""
    progress = progress or NullProgress()
    device = device or pick_device()
    if jobs:  # memory plan before any weight is loaded; DoesNotFit stops here (issue 7)
        config = plan_run(config, [job.input for job in jobs], device, progress)
    captions = [stage2_caption(config, job.caption) for job in jobs]
    states = encode_captions(
        paths[T5_FOLDER],
        captions,
        device=device,
        dtype=resolve_dtype(config.dtype, device),
        progress=progress,
        stream=config.offload == "layer",
    )
    models = load_stage_two(paths, config, device)
    if device.type == "cpu" and {models.dtype, models.vae_dtype} != {torch.float32}:
        progress.warn("half precision on the CPU is very slow; pass --dtype fp32 there")
    identity = {name: file_identity(Path(p)) for name, p in paths.items() if Path(p).is_file()}
    refiner = Refiner(
        models, config, states.__getitem__, progress=progress, weights_identity=identity
    )
    results: list[JobResult | JobFailure] = []
    for job in jobs:
        try:
            results.append(refiner.refine(job, overwrite=overwrite, resume=resume))
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted during {job.input.name}; finished windows are kept, "
                "run the same command again to resume"
            ) from None
        except VidrefineError as exc:
            progress.warn(f"{job.input}: {exc}")
            results.append(JobFailure(job, str(exc)))
    return results
