"""`vidrefine export diffusers OUT`: the stage-II weights as a diffusers folder (docs/diffusers.md).

A thin command over `vidrefine.diffusers.export.export_diffusers`, which needs the optional
extra `vidrefine[diffusers]`; OUT is checked before any weight is read.
"""

from __future__ import annotations

from pathlib import Path

import click

from vidrefine.cli.environment import Environment
from vidrefine.cli.options import weights_options


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
