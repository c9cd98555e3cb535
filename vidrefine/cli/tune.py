"""`vidrefine tune`: teach stage II your footage (docs/training.md).

\b
vidrefine tune prepare DATA -o CACHE     # windows, degraded copies, latents, T5 states
vidrefine tune train CACHE -o RUN --steps N
vidrefine tune export RUN --merge -o stage2-tuned.safetensors
"""

from __future__ import annotations

from pathlib import Path

import click

from vidrefine.cli.environment import Environment
from vidrefine.cli.options import file_output_options, weights_options


@click.group(name="tune")
def command() -> None:
    """Fine-tune stage II on your own clips (LoRA or full), then use the result in upscale.

    \b
    vidrefine tune prepare clips/ -o cache/ --size 1080p --frames 49
    vidrefine tune train cache/ -o run/ --steps 2000
    vidrefine upscale in.mp4 --lora run/adapter.safetensors
    """


@command.command(name="prepare")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "cache",
    required=True,
    type=click.Path(path_type=Path),
    metavar="CACHE",
    help="Cache folder (made, or reused when vidrefine made it).",
)
@click.option(
    "--size",
    default="1080p",
    show_default=True,
    metavar="SIZE",
    help="Training size: 1080p-style short side (aspect kept) or WIDTHxHEIGHT.",
)
@click.option(
    "--frames",
    default=49,
    show_default=True,
    type=int,
    help="Frames per window, 1 + 4k (images are one frame).",
)
@click.option(
    "--copies",
    default=3,
    show_default=True,
    type=int,
    help="Degraded copies per window, each drawn with its own seed.",
)
@click.option(
    "--strong-prob",
    default=0.5,
    show_default=True,
    type=float,
    help="Probability of the strong (real-world) degradation, else the paper's weak one.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every draw.")
@click.option(
    "--shots/--no-shots",
    default=True,
    show_default=True,
    help="Keep windows inside shots (PySceneDetect finds the cuts).",
)
@click.option(
    "--cache-dtype",
    type=click.Choice(["bf16", "fp32"]),
    default="bf16",
    show_default=True,
    help="Precision of the cached latents and T5 states.",
)
@weights_options
@click.pass_obj
def prepare(
    env: Environment,
    data: Path,
    cache: Path,
    size: str,
    frames: int,
    copies: int,
    strong_prob: float,
    seed: int,
    shots: bool,
    cache_dtype: str,
    weights: Path | None,
    offline: bool,
) -> None:
    """Cut the clips of DATA into windows and cache what training reads.

    DATA holds clips and images with same-name captions (clip.txt or clip.captions.srt), or a
    metadata.jsonl of {"video", "caption", "lr_video", "start", "end"} lines for real pairs.
    """
    from vidrefine.checkpoints.weights import T5, VAE, resolve
    from vidrefine.runtime.device import pick_device
    from vidrefine.train.cache import PrepareSettings, prepare_cache
    from vidrefine.train.degrade import DegradationSettings

    settings = PrepareSettings(
        size=size,
        frames=frames,
        copies=copies,
        seed=seed,
        shots=shots,
        dtype=cache_dtype,
        degradation=DegradationSettings(strong_prob=strong_prob),
    )
    paths = resolve((VAE, T5), weights_dir=weights, offline=offline, announce=env.note)
    result = prepare_cache(
        data,
        cache,
        settings,
        vae_path=paths[VAE.name],
        t5_folder=paths[T5.name],
        device=pick_device(),
        progress=env.progress(),
    )
    env.note(
        f"cached {result.windows} window{'s' if result.windows != 1 else ''} in {result.folder}"
        f" ({result.made} made, {result.reused} reused; {result.captions} captions)"
    )


def _targets(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@command.command(name="train")
@click.argument("cache", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "run",
    required=True,
    type=click.Path(path_type=Path),
    metavar="RUN",
    help="Run folder: checkpoints, metrics, the adapter.",
)
@click.option("--steps", required=True, type=int, help="Train up to this many steps in total.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN from its newest checkpoint.")
@click.option("--lora-rank", default=32, show_default=True, type=int, help="LoRA rank.")
@click.option("--lora-alpha", type=float, help="LoRA alpha (the update is alpha/rank x BA) [rank].")
@click.option(
    "--lora-targets",
    default="qkv,out,fc1,fc2,modulation",
    show_default=True,
    help="Each block's linears to adapt.",
)
@click.option("--full", is_flag=True, help="Fine-tune every weight instead of a LoRA adapter.")
@click.option("--lr", default=4e-5, show_default=True, type=float, help="Learning rate.")
@click.option("--warmup", default=0, show_default=True, type=int, help="Linear warm-up steps.")
@click.option(
    "--accumulate",
    default=1,
    show_default=True,
    type=int,
    help="Windows per rank per step (gradient accumulation).",
)
@click.option(
    "--steps-range",
    "step_range",
    default="650-750",
    show_default=True,
    metavar="LO-HI",
    help="Degradation steps drawn (the paper's late phase).",
)
@click.option(
    "--checkpointing/--no-checkpointing",
    default=True,
    show_default=True,
    help="Recompute each block in the backward pass (activation checkpointing).",
)
@click.option(
    "--reset-embeddings",
    is_flag=True,
    help="Start the frame-count and degradation-step embeddings from zero, as the original "
    "training did (they then add nothing until trained).",
)
@click.option(
    "--optimizer",
    type=click.Choice(["adamw", "adamw8bit"]),
    default="adamw",
    show_default=True,
    help="adamw8bit needs bitsandbytes.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every draw.")
@click.option(
    "--checkpoint-every",
    default=500,
    show_default=True,
    type=int,
    help="Save a checkpoint (and the adapter) every N steps (0: at the end only).",
)
@click.option(
    "--keep",
    "keep_checkpoints",
    default=3,
    show_default=True,
    type=int,
    help="Checkpoints kept, the newest (0: all).",
)
@click.option(
    "--val-windows",
    default=0,
    show_default=True,
    type=int,
    help="Cached windows held out for validation.",
)
@click.option(
    "--validate-every", default=0, type=int, help="Validate every N steps [at checkpoints]."
)
@click.option(
    "--log-every", default=10, show_default=True, type=int, help="Progress line every N steps."
)
@click.option(
    "--val-report",
    is_flag=True,
    help="At validation, also refine a held-out window in 4 steps: RUN/previews/step-N/ "
    "(clips and a compare report; step 0, clips only, is the base model).",
)
@click.option("--vram", "vram_gb", type=float, metavar="GB", help="Memory budget to plan for.")
@weights_options
@click.pass_obj
def train(
    env: Environment,
    cache: Path,
    run: Path,
    steps: int,
    resume: bool,
    lora_rank: int,
    lora_alpha: float | None,
    lora_targets: str,
    full: bool,
    lr: float,
    warmup: int,
    accumulate: int,
    step_range: str,
    checkpointing: bool,
    reset_embeddings: bool,
    optimizer: str,
    seed: int,
    checkpoint_every: int,
    keep_checkpoints: int,
    val_windows: int,
    validate_every: int,
    log_every: int,
    val_report: bool,
    vram_gb: float | None,
    weights: Path | None,
    offline: bool,
) -> None:
    """Train stage II on a prepared CACHE; RUN gets checkpoints, metrics and the adapter.

    \b
    vidrefine tune train cache/ -o run/ --steps 2000
    torchrun --nproc-per-node 8 -m vidrefine tune train cache/ -o run/ --steps 2000 --full
    """
    from vidrefine.checkpoints.weights import STAGE2, VAE, resolve
    from vidrefine.runtime.distributed import init_distributed, local_main_first, rank_device
    from vidrefine.runtime.distributed import shutdown as leave_ranks
    from vidrefine.train.loop import TrainSettings
    from vidrefine.train.loss import LossSettings
    from vidrefine.train.model import ModelSettings
    from vidrefine.train.run import train as train_run
    from vidrefine.train.trainer import RunOptions, TrainingStopped

    settings = TrainSettings(
        steps=steps,
        lr=lr,
        warmup_steps=warmup,
        accumulate=accumulate,
        seed=seed,
        optimizer=optimizer,
        val_windows=val_windows,
        loss=LossSettings(step_range=_step_range(step_range)),
        model=ModelSettings(
            full=full,
            rank=lora_rank,
            alpha=lora_alpha,
            targets=_targets(lora_targets),
            checkpointing=checkpointing,
            reset_embeddings=reset_embeddings,
        ),
    )
    options = RunOptions(
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        validate_every=validate_every,
        log_every=log_every,
        resume=resume,
        vram_gb=vram_gb,
        val_report=val_report,
    )
    device = rank_device()  # under torchrun, this rank's own GPU
    init_distributed(device.type)
    with local_main_first():  # one download per machine
        needed = (STAGE2, VAE) if val_report else (STAGE2,)
        paths = resolve(needed, weights_dir=weights, offline=offline, announce=env.note)
    try:
        result = train_run(
            cache,
            run,
            settings,
            options,
            stage2=paths[STAGE2.name],
            vae=paths.get(VAE.name),
            device=device,
            progress=env.progress(),
        )
    except TrainingStopped as exc:
        _stopped(exc, env)
    leave_ranks()
    if result.output is not None:
        env.note(f"trained {run} to step {result.step}; wrote {result.output}")


def _step_range(text: str) -> tuple[int, int]:
    from vidrefine.errors import BadInput

    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise BadInput(f"--steps-range {text}: give LOW-HIGH degradation steps, e.g. 650-750")
    return int(low), int(high)


def _stopped(exc: Exception, env: Environment) -> None:
    """A run stopped by a signal: its line, and 143 for SIGTERM (130 for Ctrl-C)."""
    import signal

    from vidrefine.errors import ExitCode

    terminated = getattr(exc, "signum", None) == signal.SIGTERM
    env.error(("terminated (SIGTERM): " if terminated else "") + str(exc))
    code = ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    click.get_current_context().exit(int(code))


@command.command(name="export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--merge",
    is_flag=True,
    required=True,
    help="Merge the adapter into the base weights (a kohya LoRA: vidrefine export kohya).",
)
@file_output_options("stage2-tuned.safetensors (vidrefine) or .pt (the official format).")
@weights_options
@click.pass_obj
def export(
    env: Environment,
    run: Path,
    merge: bool,
    output: Path,
    overwrite: bool,
    weights: Path | None,
    offline: bool,
) -> None:
    """Write RUN's tuned stage-II DiT, loadable wherever stage2.pt is."""
    from vidrefine.checkpoints.weights import STAGE2, resolve
    from vidrefine.train.output import export_run

    paths = resolve((STAGE2,), weights_dir=weights, offline=offline, announce=env.note)
    export_run(run, output, stage2=paths[STAGE2.name], overwrite=overwrite)
    env.note(f"wrote {output}")
