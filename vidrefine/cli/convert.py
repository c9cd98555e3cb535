"""`vidrefine convert SRC DST.safetensors`: official or diffusers weights -> vidrefine safetensors.

The VAE path is `vidrefine.checkpoints.vae.convert_vae`; the DiT path uses
`vidrefine.checkpoints.dit.convert_dit` when that module is installed. DST is checked before
anything is read (`io.atomic.check_output`) and written as a temporary file renamed when
complete (`io.atomic.atomic_output`), as every output is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from vidrefine.errors import BadInput

KINDS = ("auto", "vae", "dit")


def detect_kind(src: Path) -> str:
    """'vae' for encoder.*/decoder.* weights, 'dit' for stage checkpoints; BadInput otherwise."""
    from vidrefine.checkpoints.common import read_checkpoint  # torch: only when converting

    raw = read_checkpoint(src)
    tag = raw.metadata.get("vidrefine_format")
    if tag in ("vae", "dit"):
        return tag
    keys = list(raw.tensors)
    if any(k.startswith(("model.diffusion_model.", "transformer.layers.")) for k in keys):
        return "dit"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "vae"
    raise BadInput(f"{src}: cannot tell whether this is a VAE or a DiT; pass --kind vae|dit")


def _convert_dit(src: Path, dst: Path) -> str:
    try:
        dit = importlib.import_module("vidrefine.checkpoints.dit")
    except ModuleNotFoundError as exc:
        if exc.name != "vidrefine.checkpoints.dit":
            raise
        raise BadInput("converting a DiT is not supported by this build; use --kind vae") from exc
    dit.convert_dit(src, dst, overwrite=True)  # `dst` is our own temporary file
    return "DiT"


def _convert(src: Path, dst: Path, kind: str) -> str:
    """Convert `src` into `dst` (a temporary file of ours); what was written, for the message."""
    from vidrefine.checkpoints.vae import convert_vae

    if kind == "vae":
        return f"VAE {convert_vae(src, dst, overwrite=True).block_out_channels}"
    return _convert_dit(src, dst)


@click.command("convert")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="auto",
    show_default=True,
    help="What SRC holds; auto reads its keys.",
)
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def command(src: Path, dst: Path, kind: str, overwrite: bool) -> None:
    """Convert SRC (3d-vae.pt, a diffusers VAE folder, stage2.pt) to DST.safetensors."""
    from vidrefine.io.atomic import atomic_output, check_output

    if dst.suffix != ".safetensors":
        raise BadInput(f"{dst}: the converted weights must be a .safetensors file")
    check_output(src, dst, overwrite=overwrite)  # before minutes of reading
    if kind == "auto":
        kind = detect_kind(src)
    with atomic_output(dst, overwrite=overwrite) as temp:
        what = _convert(src, temp, kind)
    click.echo(f"wrote {what} weights to {dst}")
