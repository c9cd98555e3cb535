"""`vidrefine tune train`: a run from a cache to a tuned adapter, on one process or many.

The order: read the cache and the run folder, plan memory from the weight file's shapes (a run
that cannot fit stops before loading), load the base DiT, make it trainable, wrap it for
torchrun (DDP for LoRA, FSDP2 `fully_shard` for full fine-tuning), continue from the newest
checkpoint when resuming, then step: log, validate, checkpoint. Ctrl-C and SIGTERM finish the
current step, save a checkpoint and stop (`TrainingStopped`).
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidrefine.errors import BadCheckpoint, BadInput
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.distributed import RankInfo, barrier, init_distributed
from vidrefine.train.cache import TrainCache
from vidrefine.train.checkpoint import RunFolder, write_json
from vidrefine.train.loop import (
    TrainSettings,
    split_windows,
)
from vidrefine.train.memory import TrainingMemory, plan_training_memory
from vidrefine.train.model import TrainableDiT, make_trainable
from vidrefine.train.trainer import RunOptions, Trainer


@dataclass(frozen=True)
class RunResult:
    """What a run did."""

    folder: Path
    start_step: int
    step: int
    loss: float | None
    output: Path | None
    memory: TrainingMemory


def settings_record(settings: TrainSettings) -> dict[str, Any]:
    """The settings a resumed run must share (all but the number of steps)."""
    record = dataclasses.asdict(settings)
    record.pop("steps")
    return record


def describe_run(settings: TrainSettings, cache: TrainCache, stage2: Path) -> dict[str, Any]:
    """run.json's content: what the run trains, from what."""
    return {
        "settings": settings_record(settings),
        "cache": {"path": str(cache.folder.resolve()), "key": cache.key},
        "base": {"path": str(stage2.resolve()), "fingerprint": None},
    }


def check_resumable(described: dict[str, Any], settings: TrainSettings, cache: TrainCache) -> None:
    """BadInput unless the run in RUN was started with these settings on this cache."""
    saved, now = _flat(described["settings"]), _flat(_jsonable(settings_record(settings)))
    differ = sorted(k for k in now if now[k] != saved.get(k))
    if differ:
        shown = "; ".join(f"{k} was {saved.get(k)}, now {now[k]}" for k in differ)
        raise BadInput(f"--resume with other settings than the run's ({shown}); use the run's")
    if described["cache"]["key"] != cache.key:
        raise BadInput(f"--resume on another cache than the run's ({described['cache']['path']})")


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"rank": 8}} -> {"model.rank": 8}."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def plan_memory(
    stage2: Path,
    cache: TrainCache,
    train: list[int],
    settings: TrainSettings,
    options: RunOptions,
    device: torch.device,
    world_size: int,
) -> TrainingMemory:
    """The memory plan, from the weight file's shapes (no weights read) and the longest window."""
    from vidrefine.checkpoints.dit import read_dit_weights
    from vidrefine.plan.memory import dit_tokens

    config = read_dit_weights(stage2).config  # memory-mapped: shapes only
    tokens = max(
        dit_tokens(cache.latent_shape(i)[0], cache.latent_shape(i)[2:], config) for i in train
    )
    budget = options.vram_gb
    if budget is None and device.type == "cuda":
        budget = torch.cuda.get_device_properties(device).total_memory / 1024**3
    return plan_training_memory(
        config,
        tokens,
        settings.model,
        device_kind=device.type,
        world_size=world_size,
        budget_gb=budget,
    )


def load_base(stage2: Path, settings: TrainSettings, device: torch.device) -> TrainableDiT:
    """The stage-II DiT from `stage2`, trainable (bf16 base on a GPU, fp32 on the CPU)."""
    from vidrefine.checkpoints.dit import load_dit

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dit = load_dit(stage2, None, dtype=dtype, device=device, stage=2)
    return make_trainable(dit, settings.model, seed=settings.seed)


def train(
    cache_dir: str | Path,
    run_dir: str | Path,
    settings: TrainSettings,
    options: RunOptions,
    *,
    stage2: Path,
    vae: Path | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Train (or continue) the run in `run_dir` on the cache in `cache_dir` up to `steps` steps.

    Raises:
        BadInput: not a cache, --resume without a run or with other settings.
        OutputExists: a new run's folder holds anything.
        DoesNotFit: the memory plan exceeds the device (before any weight is read).
        BadCheckpoint: the base model is not the one the resumed run started from.
        TrainingStopped: Ctrl-C or SIGTERM, after a checkpoint was saved.
    """
    progress = progress or NullProgress()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    place = init_distributed(device.type)
    cache, run = TrainCache(cache_dir), RunFolder(run_dir)
    split = split_windows(len(cache), settings.val_windows, settings.seed)
    memory = plan_memory(stage2, cache, split.train, settings, options, device, place.world_size)
    if options.val_report and vae is None:
        raise BadInput("--val-report needs the VAE (3d-vae.pt) to decode its previews")
    if options.resume:
        check_resumable(run.description(), settings, cache)
    elif place.is_main:
        run.create(describe_run(settings, cache, stage2))
    barrier()
    progress.info(f"memory plan: {memory.line()}")
    try:
        start, step, loss = _train(
            run, cache, settings, options, stage2, vae, place, device, progress
        )
    except BaseException:
        if not options.resume and place.is_main and run.latest() is None:
            shutil.rmtree(run.folder, ignore_errors=True)  # a new run that saved nothing
        raise
    output = _output_path(run.folder, settings.model.full)
    return RunResult(run.folder, start, step, loss, output, memory)


def _train(
    run: RunFolder,
    cache: TrainCache,
    settings: TrainSettings,
    options: RunOptions,
    stage2: Path,
    vae: Path | None,
    place: RankInfo,
    device: torch.device,
    progress: Progress,
) -> tuple[int, int, float | None]:
    """Load, resume, step; returns (first step, last step, last loss)."""
    trainable = load_base(stage2, settings, device)
    _check_base(run, run.description(), trainable, place)
    trainer = Trainer(run, cache, settings, options, trainable, place, device, progress)
    if vae is not None and options.val_report:
        trainer.enable_previews(vae)
    if options.resume:
        trainer.resume()
    elif options.val_report:
        trainer.preview()  # step 0: the base model, to compare the tuned previews with
    start = trainer.step
    if start >= settings.steps:
        progress.info(f"{run.folder} is at step {start} already; nothing to train")
    try:
        trainer.loop()
    finally:
        step, loss = trainer.step, trainer.loss
        del trainer, trainable  # DDP's reducer holds the process group until it is collected
        gc.collect()
    return start, step, loss


def _check_base(
    run: RunFolder, described: dict[str, Any], trainable: TrainableDiT, place: RankInfo
) -> None:
    """Record the base model's fingerprint, or check that a resumed run's is unchanged."""
    saved = described["base"].get("fingerprint")
    if saved is None:
        if place.is_main:
            described["base"]["fingerprint"] = trainable.base_fingerprint
            write_json(run.folder / "run.json", described)
        return
    if saved != trainable.base_fingerprint:
        raise BadCheckpoint(
            f"{run.folder} was trained from another base model (fingerprint {saved}, this "
            f"stage2's is {trainable.base_fingerprint}); resume with the weights it started from"
        )


def _output_path(folder: Path, full: bool) -> Path | None:
    from vidrefine.train.output import ADAPTER_FILE, FULL_FILE

    path = folder / (FULL_FILE if full else ADAPTER_FILE)
    return path if path.is_file() else None
