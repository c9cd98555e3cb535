"""`vidrefine info FILE [--json]`: what a video holds, as a table for people or JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vidrefine.io.probe import MediaInfo, probe


def _rate(value) -> str:
    return "-" if value is None else f"{float(value):.3f} ({value.numerator}/{value.denominator})"


def _rows(info: MediaInfo) -> list[tuple[str, str]]:
    """(label, value) lines for the table, people's units (W x H, seconds, fps)."""
    height, width = info.size_hw
    shown_h, shown_w = info.display_hw
    count = f"{info.frame_count}" + (" (counted)" if info.frame_count_counted else "")
    if info.frame_count_declared not in (None, info.frame_count):
        count += f", header says {info.frame_count_declared}"
    tags = (info.color_primaries, info.color_trc, info.color_space, info.color_range)
    colour = "untagged" if tags == (None,) * 4 else ", ".join(str(v or "-") for v in tags)
    rows = [
        ("file", str(info.path)),
        ("container", info.container),
        ("duration", "-" if info.duration_s is None else f"{info.duration_s:.3f} s"),
        ("video", f"{info.codec}, {info.pix_fmt}, {info.bit_depth}-bit"),
        ("size", f"{width}x{height} stored, {shown_w}x{shown_h} shown"),
        ("rotation", f"{info.rotation} degrees"),
        ("fps", _rate(info.fps) + (", variable" if info.is_vfr else "")),
        ("fps measured", _rate(info.fps_measured)),
        ("frames", count),
        ("time base", f"{info.time_base.numerator}/{info.time_base.denominator}"),
        ("colour", colour),
    ]
    for a in info.audio:
        length = "-" if a.duration_s is None else f"{a.duration_s:.3f} s"
        lang = f", {a.language}" if a.language else ""
        rows.append(
            (f"audio #{a.index}", f"{a.codec}, {a.sample_rate} Hz, {a.layout}, {length}{lang}")
        )
    rows += [(f"subtitle #{s.index}", f"{s.codec}, {s.language or '-'}") for s in info.subtitles]
    return rows


@click.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (fps and time base exact).")
@click.option("--plan", is_flag=True, help="Predict GPU and host memory of upscaling FILE.")
@click.option("--preset", metavar="NAME|FILE", help="Preset to plan for (with --plan).")
@click.option("--size", metavar="SIZE", help="Output size to plan for (with --plan).")
@click.option("--vram", type=float, metavar="GB", help="GPU memory to plan for (with --plan).")
def command(
    file: Path,
    as_json: bool,
    plan: bool,
    preset: str | None,
    size: str | None,
    vram: float | None,
) -> None:
    """Show what FILE holds: size, rotation, exact frame rate, frame count, colour, audio."""
    info = probe(file)
    if plan:
        print_plan(info.display_hw, preset, size, vram)
        return
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in _rows(info):
        table.add_row(label, value)
    Console(highlight=False, soft_wrap=True).print(table)


def print_plan(
    display_hw: tuple[int, int], preset: str | None, size: str | None, vram: float | None
) -> None:
    """The memory plan of upscaling a clip of `display_hw` (vidrefine info FILE --plan)."""
    from rich.console import Console
    from rich.table import Table

    from vidrefine.planner import plan_memory
    from vidrefine.presets import load_config

    config = load_config(preset, {"size": size, "vram_gb": vram})
    if config.vram_gb is None:
        config = _with_device_budget(config)
    memory = plan_memory(config, display_hw)
    table = Table(title=f"memory plan, preset {preset or 'default'}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    h, w = memory.output_hw
    table.add_row("output", f"{w}x{h} ({memory.tokens:,} DiT tokens a sample)")
    table.add_row("budget", f"{memory.budget_gb:.1f} GB" if memory.budget_gb else "none given")
    table.add_row("offload", memory.offload)
    table.add_row("guidance", "batched (2 in one call)" if memory.cfg_batched else "in turn")
    table.add_row("VAE", f"{memory.vae_mode}, tile {memory.vae_tile_latent or 'whole frame'}")
    for name, gb in memory.parts_gb.items():
        table.add_row(name, f"{gb:.2f} GB")
    for name, gb in memory.phases_gb.items():
        table.add_row(f"GPU peak during {name}", f"{gb:.2f} GB")
    table.add_row("GPU peak", f"{memory.gpu_peak_gb:.2f} GB")
    table.add_row("host RAM peak", f"{memory.host_gb:.2f} GB")
    Console(highlight=False, soft_wrap=True).print(table)


def _with_device_budget(config):
    """Plan for the CUDA device's memory when there is one and no --vram was given."""
    import dataclasses

    import torch

    if not torch.cuda.is_available():
        return config
    total = torch.cuda.get_device_properties(0).total_memory / 1024**3
    return dataclasses.replace(config, vram_gb=total)
