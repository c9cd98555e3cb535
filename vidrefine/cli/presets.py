"""`vidrefine presets`: the shipped presets, what each changes from the defaults, and why."""

from __future__ import annotations

from dataclasses import asdict

import click
from rich.table import Table

from vidrefine.cli.environment import Environment
from vidrefine.config import RunConfig
from vidrefine.presets import available_presets, describe, load_config


def changed_keys(name: str) -> str:
    """'steps=5, cfg_scale=13.0, ...': what preset `name` sets differently from the defaults."""
    defaults = asdict(RunConfig())
    config = asdict(load_config(name))
    changed = [f"{k}={v!r}" for k, v in config.items() if defaults[k] != v]
    return ", ".join(changed) or "(the defaults)"


@click.command(name="presets")
@click.pass_obj
def command(env: Environment) -> None:
    """List the shipped presets (use one with --preset NAME, or pass your own .toml file)."""
    table = Table("preset", "what it is for", "changes from the defaults", title="presets")
    for name, path in available_presets().items():
        table.add_row(name, describe(path), changed_keys(name))
    env.console.print(table)
