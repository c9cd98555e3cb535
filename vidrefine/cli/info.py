"""`vidrefine info FILE [--json]`: what a video holds, as a table for people or JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vidrefine.cli.environment import Environment
from vidrefine.cli.scaleout import PARALLEL_CHOICES

if TYPE_CHECKING:  # PyAV (probe) and the planner load when the command runs
    from vidrefine.config import RunConfig
    from vidrefine.io.probe import MediaInfo
    from vidrefine.plan.clip import ClipPlan, SourceFacts
    from vidrefine.plan.hardware import DeviceFacts

# GPU memory sizes (GB) of common cards, tried in turn for "smallest card" without a GPU
CARD_SIZES_GB = (8, 10, 12, 16, 24, 32, 40, 48, 80)


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
        ("scan", _scan(info)),
        ("alpha", "yes (dropped when refined)" if info.has_alpha else "no"),
    ]
    rows += [
        (f"video #{v.index}", f"{v.codec}, {v.width}x{v.height}, {v.pix_fmt} (not refined)")
        for v in info.other_video
    ]
    for a in info.audio:
        length = "-" if a.duration_s is None else f"{a.duration_s:.3f} s"
        lang = f", {a.language}" if a.language else ""
        rows.append(
            (f"audio #{a.index}", f"{a.codec}, {a.sample_rate} Hz, {a.layout}, {length}{lang}")
        )
    rows += [(f"subtitle #{s.index}", f"{s.codec}, {s.language or '-'}") for s in info.subtitles]
    return rows


def _scan(info: MediaInfo) -> str:
    """Interlacing in words: "interlaced, top field first", "progressive"."""
    if info.interlaced:
        return f"interlaced, {info.field_order_text}"
    return "progressive" + ("" if info.field_order else " (the file does not say)")


@click.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON with ffprobe's field names (plus vidrefine's).",
)
@click.option(
    "--plan", is_flag=True, help="Show the plan of upscaling FILE: sizes, windows, memory."
)
@click.option("--preset", metavar="NAME|FILE", help="Preset to plan for (with --plan).")
@click.option("--size", metavar="SIZE", help="Output size to plan for (with --plan).")
@click.option("--vram", type=float, metavar="GB", help="GPU memory to plan for (with --plan).")
@click.option("--shots", is_flag=True, help="List the shots (hard cuts found in FILE).")
@click.option(
    "--ranks",
    type=click.IntRange(1),
    default=1,
    help="Plan for N torchrun ranks (with --plan): windows and memory per rank.",
)
@click.option(
    "--parallel",
    type=click.Choice(PARALLEL_CHOICES),
    default="auto",
    help="How the ranks share the clip (with --plan --ranks; auto: windows).",
)
@click.option(
    "--cut-threshold", type=float, metavar="RATIO", help="Cut sensitivity (lower: more cuts)."
)
@click.option(
    "--weights",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Plan for the weights found here first (with --plan) [else the search path's; the "
    "official sizes when some are missing].",
)
def command(
    file: Path,
    as_json: bool,
    plan: bool,
    preset: str | None,
    size: str | None,
    vram: float | None,
    shots: bool,
    cut_threshold: float | None,
    ranks: int,
    parallel: str,
    weights: Path | None,
) -> None:
    """Show what FILE holds: size, rotation, exact frame rate, frame count, colour, streams."""
    from vidrefine.io.probe import probe

    info = probe(file)
    if shots and not plan:
        from vidrefine.cli.shot_list import print_shots
        from vidrefine.presets import load_config

        config = load_config(preset, {"cut_threshold": cut_threshold})
        print_shots(info, config, Environment.of(), as_json=as_json)
        return
    if plan:
        print_plan(
            info,
            preset,
            size,
            vram,
            as_json=as_json,
            cut_threshold=cut_threshold,
            ranks=(parallel, ranks),
            weights=weights,
        )
        return
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in _rows(info):
        table.add_row(label, value)
    Environment.of().console.print(table)


def print_plan(
    info: MediaInfo,
    preset: str | None,
    size: str | None,
    vram: float | None,
    *,
    as_json: bool,
    cut_threshold: float | None = None,
    ranks: tuple[str, int] = ("auto", 1),
    weights: Path | None = None,
) -> None:
    """The plan `vidrefine upscale` would run for this file (`vidrefine info FILE --plan`), its
    shots detected as `upscale` detects them; `ranks`: (--parallel, --ranks) of a torchrun;
    sized for the weights found on the search path (`weights` first) when all are there.
    """
    from vidrefine.pipeline.devices import device_facts
    from vidrefine.pipeline.loading import sizes_if_found
    from vidrefine.pipeline.shots import clip_source
    from vidrefine.plan.clip import plan_clip
    from vidrefine.plan.ranks import layout_for
    from vidrefine.presets import load_config

    config = load_config(preset, {"size": size, "vram_gb": vram, "cut_threshold": cut_threshold})
    device = device_facts(weights=sizes_if_found(weights))
    source = clip_source(info, config)
    plan = plan_clip(source, config, device, layout=layout_for(*ranks))
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2))
        return
    cards: list[tuple[str, str]] = []
    if device.kind != "cuda" and vram is None:
        cards = [
            (f"smallest card, {name}", card)
            for name, card in smallest_cards(source, size, device.host_memory_gb).items()
        ]
    _plan_table(plan, preset, device_text(plan.device, config, preset, vram), cards)


def device_text(
    device: DeviceFacts, config: RunConfig, preset: str | None, vram: float | None
) -> str:
    """What the plan was made for: the GPU found, the --vram card, or no GPU and no budget."""
    found = (
        f"{device.name} ({device.memory_gb:.1f} GB)"
        if device.kind == "cuda" and device.memory_gb is not None
        else "no CUDA GPU found"
    )
    if vram is not None:
        return f"{found}: planned for a {vram:.1f} GB card (--vram)"
    if config.vram_gb is not None:
        return f"{found}: planned for a {config.vram_gb:.1f} GB budget (preset {preset})"
    if device.kind == "cuda":
        return f"{found}: planned for this card"
    return f"{found}: planned without a budget; pass --vram GB to plan for a card"


def smallest_cards(source: SourceFacts, size: str | None, host_memory_gb: float) -> dict[str, str]:
    """For each shipped preset, the smallest card of CARD_SIZES_GB its plan for `source` fits.

    Each card is planned as a CUDA device of that memory (bf16 where the preset says "auto"); a
    preset's own `vram_gb` budget is kept when it is smaller than the card.
    """
    from vidrefine.config import replace
    from vidrefine.errors import DoesNotFit
    from vidrefine.plan.clip import plan_clip
    from vidrefine.plan.hardware import DeviceFacts
    from vidrefine.presets import available_presets, load_config

    found: dict[str, str] = {}
    for name in available_presets():
        config = load_config(name, {"size": size})
        found[name] = f"none up to {CARD_SIZES_GB[-1]} GB"
        for card in CARD_SIZES_GB:
            budget = card if config.vram_gb is None else min(config.vram_gb, card)
            device = DeviceFacts("cuda", f"{card} GB card", float(card), host_memory_gb)
            try:
                plan = plan_clip(source, replace(config, vram_gb=float(budget)), device)
            except DoesNotFit:
                continue
            memory = plan.memory
            if memory.gpu_peak_gb <= card:
                how = ", layers streamed" * (memory.offload == "layer")
                how += ", guidance in turn" * (not memory.cfg_batched)
                found[name] = f"{card} GB (GPU peak {memory.gpu_peak_gb:.1f} GB{how})"
                break
    return found


def _plan_table(
    plan: ClipPlan, preset: str | None, device: str, cards: list[tuple[str, str]]
) -> None:
    from rich.table import Table

    memory = plan.memory
    table = Table(title=f"plan, preset {preset or 'default'}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    h, w = plan.geometry.output_hw
    first, last = plan.windows[0], plan.windows[-1]
    table.add_row("output", f"{w}x{h} ({memory.tokens:,} DiT tokens a sample)")
    table.add_row("windows", f"{len(plan.windows)} (frames {first.start_frame}-{last.stop_frame})")
    starts = ", ".join(str(shot.start_frame) for shot in plan.shots[1:])
    table.add_row("shots", f"{len(plan.shots)}" + (f" (cuts at frames {starts})" if starts else ""))
    table.add_row("device", device)
    table.add_row("budget", _gb(memory.budget_gb))
    table.add_row("precision", f"DiT {plan.models.dtype}, VAE {plan.models.vae_dtype}")
    table.add_row("offload", memory.offload)
    table.add_row("guidance", "batched (2 in one call)" if memory.cfg_batched else "in turn")
    table.add_row("VAE", f"{plan.vae.mode}, tile {memory.vae_tile_latent or 'whole frame'}")
    for name, gb in memory.parts_gb.items():
        table.add_row(name, f"{gb:.2f} GB")
    for name, gb in memory.phases_gb.items():
        table.add_row(f"GPU peak during {name}", f"{gb:.2f} GB")
    table.add_row("GPU peak", f"{memory.gpu_peak_gb:.2f} GB")
    table.add_row("host RAM peak", f"{memory.host_gb:.2f} GB")
    for label, value in [*rank_rows(plan), *cards]:
        table.add_row(label, value)
    Environment.of().console.print(table)


def rank_rows(plan: ClipPlan) -> list[tuple[str, str]]:
    """Rows of a plan for several ranks: the layout and which rank refines which window."""
    from vidrefine.plan.ranks import windows_by_rank

    layout = plan.layout
    if layout.ranks == 1:
        return []
    rows = [("ranks", f"{layout.line()} (memory above is per rank)")]
    if layout.mode != "windows":
        return rows
    for rank, held in windows_by_rank(plan.windows, layout.ranks).items():
        shown = ", ".join(str(index + 1) for index in held) or "none (fewer windows than ranks)"
        rows.append((f"rank {rank}", f"window{'s' * (len(held) != 1)} {shown}"))
    return rows


def _gb(value: float | None) -> str:
    return "none (no GPU: nothing is refused)" if value is None else f"{value:.1f} GB"
