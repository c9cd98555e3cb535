"""`vidrefine export diffusers OUT`: the stage-II weights as a diffusers folder (docs/diffusers.md).

A thin command over `vidrefine.diffusers.export.export_diffusers`, which needs the optional
extra `vidrefine[diffusers]`; OUT is checked before any weight is read.
"""

from __future__ import annotations

from pathlib import Path

import click

from vidrefine.cli.environment import Environment
from vidrefine.cli.options import file_output_options, weights_options


@click.group(name="export")
def command() -> None:
    """Write vidrefine's models in another library's format."""


@command.command(name="diffusers")
@click.argument("out", type=click.Path(path_type=Path))
@weights_options
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a folder vidrefine exported.")
@click.pass_obj
def diffusers_command(
    env: Environment, out: Path, weights: Path | None, offline: bool, overwrite: bool
) -> None:
    """Write OUT: a diffusers folder of stage II (code included), loadable with
    DiffusionPipeline.from_pretrained(OUT, trust_remote_code=True).
    """
    from vidrefine.diffusers.export import export_diffusers

    final = export_diffusers(
        out, weights=weights, overwrite=overwrite, offline=offline, say=env.note
    )
    click.echo(f"wrote the diffusers folder {final}")


@command.command(name="kohya")
@click.argument("adapter", type=click.Path(path_type=Path))
@file_output_options("The LoRA file to write (.safetensors).")
@weights_options
@click.pass_obj
def kohya_command(
    env: Environment,
    adapter: Path,
    output: Path,
    overwrite: bool,
    weights: Path | None,
    offline: bool,
) -> None:
    """Write a tune adapter (ADAPTER: its file, or the run folder) as a kohya-style LoRA
    (lora_up/lora_down/alpha) for ComfyUI wrappers; checked against the stage2 weights.
    """
    from vidrefine.checkpoints.weights import STAGE2, resolve
    from vidrefine.diffusers.kohya import check_kohya_job, export_kohya
    from vidrefine.train.output import ADAPTER_FILE

    source = adapter / ADAPTER_FILE if adapter.is_dir() else adapter
    tuned = check_kohya_job(source, output, overwrite=overwrite)  # before any weight is fetched
    paths = resolve((STAGE2,), weights_dir=weights, offline=offline, announce=env.note)
    export_kohya(tuned, output, stage2=paths[STAGE2.name], overwrite=overwrite)
    env.note(f"wrote {output}")
