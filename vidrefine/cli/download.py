"""`vidrefine download`: fetch the weight files from the Hugging Face Hub ahead of time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from vidrefine.cli.environment import Environment
from vidrefine.errors import BadInput, MissingWeights

if TYPE_CHECKING:  # vidrefine.checkpoints imports torch: loaded when the command runs
    from vidrefine.checkpoints.weights import WeightFile


def parse_only(text: str | None) -> tuple[WeightFile, ...]:
    """'vae,stage2' -> those entries; None -> the four of upscale and t2v (not the captioner)."""
    from vidrefine.checkpoints.weights import ALL_WEIGHTS, BY_KEY

    if text is None:
        return ALL_WEIGHTS
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown or not keys:
        raise BadInput(
            f"--only {text!r}: unknown name(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(BY_KEY)}"
        )
    return tuple(BY_KEY[k] for k in dict.fromkeys(keys))


@click.command(name="download")
@click.option(
    "--weights",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Download into this folder [$VIDREFINE_WEIGHTS, else the user cache].",
)
@click.option(
    "--only",
    metavar="NAMES",
    help="Comma-separated subset of vae,stage2,t5,stage1,captioner [vae,stage2,t5,stage1; "
    "upscale needs vae,stage2,t5; caption needs captioner,t5].",
)
@click.option("--offline", is_flag=True, help="Only check what is present; never fetch.")
@click.pass_obj
def command(env: Environment, weights: Path | None, only: str | None, offline: bool) -> None:
    """Fetch FlashVideo's weights and the T5 encoder (resumes an interrupted download)."""
    from rich.table import Table

    from vidrefine.checkpoints.weights import HubUnreachable, resolve

    files = parse_only(only)
    try:
        found = resolve(
            files, weights_dir=weights, offline=offline, announce=env.note, advise_download=False
        )
    except HubUnreachable as exc:  # never advise running this very command again
        names = ", ".join(w.display_name for w in exc.missing)
        verb = "was" if len(exc.missing) == 1 else "were"
        raise MissingWeights(
            f"the Hugging Face Hub cannot be reached ({exc.reason}), so {names} {verb} not "
            f"fetched into {exc.target}: retry when online, or copy the files into {exc.target}"
        ) from exc
    table = Table("weights", "path", title="weights ready")
    for weight in files:
        table.add_row(weight.display_name, str(found[weight.name]))
    env.console.print(table)
