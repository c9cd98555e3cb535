"""`vidrefine info FILE --shots`: the shots `upscale` refines one by one, as a table or JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from vidrefine.cli.environment import Environment
    from vidrefine.config import RunConfig
    from vidrefine.io.probe import MediaInfo
    from vidrefine.plan.shots import Shot


def shot_dict(shot: Shot) -> dict[str, int | float]:
    """One shot for `--json` (end exclusive, times in seconds)."""
    return {
        "start_frame": shot.start_frame,
        "end_frame": shot.end_frame,
        "start_s": round(shot.start_s, 6),
        "end_s": round(shot.end_s, 6),
    }


def print_shots(info: MediaInfo, config: RunConfig, env: Environment, *, as_json: bool) -> None:
    """Detect and print the shots of `info`'s clip: the probe's JSON plus "shots", or a table."""
    from vidrefine.config import replace
    from vidrefine.pipeline.shots import planned_shots

    shots = planned_shots(info, replace(config, shots=True)) or ()  # cuts whatever the preset says
    if as_json:
        data = {**info.to_dict(), "shots": [shot_dict(shot) for shot in shots]}
        click.echo(json.dumps(data, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{info.path.name}: {len(shots)} shot{'s' * (len(shots) != 1)}")
    for column in ("shot", "frames", "time (s)", "length"):
        table.add_column(column, justify="right")
    for number, shot in enumerate(shots, start=1):
        table.add_row(
            str(number),
            f"{shot.start_frame}-{shot.end_frame - 1}",
            f"{shot.start_s:.3f}-{shot.end_s:.3f}",
            f"{shot.frames} frames, {shot.end_s - shot.start_s:.2f} s",
        )
    env.console.print(table)
