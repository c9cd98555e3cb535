"""Options shared by `upscale` and `t2v`, and the flags -> RunConfig merge they both use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vidrefine.cli.environment import Environment
from vidrefine.config import COLOR_FIXES, RunConfig
from vidrefine.presets import DEFAULT_PRESET, load_config, to_toml

F = TypeVar("F", bound=Callable[..., Any])

# click parameter name -> RunConfig key, and the flag users type (for error messages).
FLAG_KEYS = {
    "size": ("size", "--size"),
    "steps": ("steps", "--steps"),
    "cfg": ("cfg_scale", "--cfg"),
    "strength": ("strength", "--strength"),
    "shift": ("shift", "--shift"),
    "seed": ("seed", "--seed"),
    "vram": ("vram_gb", "--vram"),
    "crf": ("crf", "--crf"),
    "codec": ("codec", "--codec"),
    "encoder_preset": ("encoder_preset", "--encoder-preset"),
    "audio": ("audio", "--audio/--no-audio"),
    "dtype": ("dtype", "--dtype"),
    "color_fix": ("color_fix", "--color-fix"),
    "shots": ("shots", "--shots/--no-shots"),
    "cut_threshold": ("cut_threshold", "--cut-threshold"),
    "lora": ("lora", "--lora"),
}


def _apply(options: list[Callable[[F], F]], func: F) -> F:
    for option in reversed(options):
        func = option(func)
    return func


def run_options(func: F) -> F:
    """The RunConfig knobs (all default to None: unset flags leave the preset's value)."""
    return _apply(
        [
            click.option(
                "--preset",
                metavar="NAME|FILE",
                help=f"Preset name (see `vidrefine presets`) or a .toml file [{DEFAULT_PRESET}].",
            ),
            click.option(
                "--size",
                metavar="SIZE",
                help="Output size: 720p, 1080p, 1440p (short side, aspect kept) or WIDTHxHEIGHT.",
            ),
            click.option("--steps", type=int, help="Euler steps of the stage-II flow."),
            click.option("--cfg", type=float, help="Guidance scale (1 turns guidance off)."),
            click.option(
                "--strength", type=int, help="Degradation step 600..750 (higher: more change)."
            ),
            click.option("--shift", type=float, help="Time-grid shift (denser steps near t=0)."),
            click.option("--seed", type=int, help="Seed of the degradation noise."),
            click.option("--vram", type=float, metavar="GB", help="GPU memory budget to plan for."),
            click.option("--crf", type=int, help="Encoder quality (lower is better, 0..51)."),
            click.option("--codec", type=click.Choice(["h264", "hevc"]), help="Video codec."),
            click.option(
                "--ten-bit", is_flag=True, default=None, help="Write 10-bit video (yuv420p10le)."
            ),
            click.option(
                "--encoder-preset", metavar="NAME", help="x264/x265 preset (ultrafast..veryslow)."
            ),
            click.option(
                "--audio/--no-audio", default=None, help="Keep the audio streams (default: keep)."
            ),
            click.option(
                "--dtype",
                type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
                help="Model precision (auto: bf16 on CUDA, fp32 on CPU).",
            ),
            click.option(
                "--color-fix",
                type=click.Choice(list(COLOR_FIXES)),
                help="Pull each window's colours back to the input's (docs/quality.md) [none].",
            ),
            click.option(
                "--lora",
                multiple=True,
                metavar="FILE[:SCALE]",
                help="Merge a `vidrefine tune` adapter into stage II (repeatable; scale 1).",
            ),
            click.option(
                "--show-config",
                is_flag=True,
                help="Print the merged settings as a preset file and exit.",
            ),
        ],
        func,
    )


def shot_options(func: F) -> F:
    """Shot detection knobs (docs/pipeline.md "Shots"); unset flags leave the preset's value."""
    return _apply(
        [
            click.option(
                "--shots/--no-shots",
                default=None,
                help="Find hard cuts and refine each shot on its own (default: on).",
            ),
            click.option(
                "--cut-threshold",
                type=float,
                metavar="RATIO",
                help="Cut sensitivity: lower finds more cuts [3.0].",
            ),
        ],
        func,
    )


def weights_options(func: F) -> F:
    """Where weights are looked for, and whether missing ones may be fetched."""
    return _apply(
        [
            click.option(
                "--weights",
                type=click.Path(file_okay=False, path_type=Path),
                metavar="DIR",
                help="Weights folder, searched first (then $VIDREFINE_WEIGHTS, then the cache).",
            ),
            click.option(
                "--offline",
                is_flag=True,
                help="Never fetch: fail naming any missing weight file (also HF_HUB_OFFLINE=1).",
            ),
        ],
        func,
    )


def file_output_options(what: str) -> Callable[[F], F]:
    """`-o/--output FILE` (required; `what` is its help) and `--overwrite`."""

    def decorate(func: F) -> F:
        output = click.option(
            "-o", "--output", required=True, type=click.Path(path_type=Path), help=what
        )
        overwrite = click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
        return _apply([output, overwrite], func)

    return decorate


def build_config(preset: str | None, ten_bit: bool | None, **flags: Any) -> RunConfig:
    """Merge defaults < preset < the flags the user gave (flags named as in FLAG_KEYS)."""
    overrides = {FLAG_KEYS[name][0]: value for name, value in flags.items()}
    if not overrides.get("lora"):  # no --lora given: the preset's adapters stay
        overrides["lora"] = None
    names = {key: flag for key, flag in FLAG_KEYS.values()}
    if ten_bit:
        overrides["pix_fmt"] = "yuv420p10le"
    return load_config(preset, overrides, names=names)


def print_config(env: Environment, config: RunConfig, preset: str | None) -> None:
    """`--show-config`: the merged settings as a preset file users can save and edit."""
    header = f"vidrefine {'' if preset else 'default '}settings: defaults < preset "
    header += f"{preset or DEFAULT_PRESET} < command-line flags"
    env.stdout.write(to_toml(config, header=header))
