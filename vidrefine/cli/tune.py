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
from vidrefine.cli.options import weights_options


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
@click.option("-o", "--output", "cache", required=True, type=click.Path(path_type=Path),
              metavar="CACHE", help="Cache folder (made, or reused when vidrefine made it).")
@click.option("--size", default="1080p", show_default=True, metavar="SIZE",
              help="Training size: 1080p-style short side (aspect kept) or WIDTHxHEIGHT.")
@click.option("--frames", default=49, show_default=True, type=int,
              help="Frames per window, 1 + 4k (images are one frame).")
@click.option("--copies", default=3, show_default=True, type=int,
              help="Degraded copies per window, each drawn with its own seed.")
@click.option("--strong-prob", default=0.5, show_default=True, type=float,
              help="Probability of the strong (real-world) degradation, else the paper's weak one.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every draw.")
@click.option("--shots/--no-shots", default=True, show_default=True,
              help="Keep windows inside shots (PySceneDetect finds the cuts).")
@click.option("--cache-dtype", type=click.Choice(["bf16", "fp32"]), default="bf16",
              show_default=True, help="Precision of the cached latents and T5 states.")
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
        size=size, frames=frames, copies=copies, seed=seed, shots=shots, dtype=cache_dtype,
        degradation=DegradationSettings(strong_prob=strong_prob),
    )
    paths = resolve((VAE, T5), weights_dir=weights, offline=offline, announce=env.note)
    result = prepare_cache(
        data, cache, settings, vae_path=paths[VAE.name], t5_folder=paths[T5.name],
        device=pick_device(), progress=env.progress(),
    )
    env.note(
        f"cached {result.windows} window{'s' if result.windows != 1 else ''} in {result.folder}"
        f" ({result.made} made, {result.reused} reused; {result.captions} captions)"
    )
