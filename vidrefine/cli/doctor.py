"""`vidrefine doctor`: what this installation has (torch, GPUs, codecs, weights) and lacks."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vidrefine.cli.environment import Environment

if TYPE_CHECKING:  # rich tables and vidrefine.checkpoints (torch) load when the command runs
    from rich.table import Table

    from vidrefine.checkpoints.weights import WeightFile

ENCODERS = ("libx264", "libx265", "aac")
NEEDED_BY = {"stage1": "t2v", "captioner": "caption, upscale --caption auto"}  # else both


def torch_rows() -> list[tuple[str, str]]:
    """The torch version, CUDA availability and each GPU's memory."""
    try:
        import torch
    except ImportError:
        return [("torch", "not installed: pip install torch (CPU or a CUDA build)")]
    rows = [("torch", torch.__version__)]
    if not torch.cuda.is_available():
        return [*rows, ("CUDA", "not available (runs on the CPU: slow)")]
    rows.append(("CUDA", f"available ({torch.version.cuda})"))
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        rows.append((f"GPU {index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    return rows


def distributed_rows() -> list[tuple[str, str]]:
    """The torchrun set-up this process would use: launched or not, rank, backend, device."""
    try:
        from vidrefine.runtime.distributed import setup_rows
    except ImportError:  # no torch: torch_rows says so
        return []
    return [(f"distributed {name}", state) for name, state in setup_rows()]


def av_rows() -> list[tuple[str, str]]:
    """PyAV version and whether the encoders vidrefine writes with exist."""
    try:
        import av
    except ImportError:
        return [("PyAV", "not installed: pip install av")]
    rows = [("PyAV", f"{av.__version__} (FFmpeg {_ffmpeg_version(av)})")]
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            state = "yes"
        except ValueError:  # av.codec.codec.UnknownCodecError
            state = "missing"
        rows.append((f"encoder {name}", state))
    return rows


def _ffmpeg_version(av_module: object) -> str:
    versions = getattr(av_module, "library_versions", {})
    major, minor, micro = versions.get("libavformat", (0, 0, 0))
    return f"libavformat {major}.{minor}.{micro}"


def _size_text(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return f"{sum(p.stat().st_size for p in files) / 1e9:.2f} GB"


def weights_table(files: Sequence[WeightFile], found: Mapping[str, Path | None]) -> Table:
    """One row per entry of `files`: where `found` (`checkpoints.weights.locate`) has it."""
    from rich.table import Table

    table = Table("weights", "needed by", "found in", "size", title="weights")
    for weight in files:
        needed = NEEDED_BY.get(weight.key, "upscale, t2v")
        path = found[weight.name]
        if path is None:
            table.add_row(weight.display_name, needed, "missing", f"~{weight.size_gb:.1f} GB")
        else:
            table.add_row(weight.display_name, needed, str(path.parent), _size_text(path))
    return table


@click.command(name="doctor")
@click.option(
    "--weights",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Also look in this weights folder (first).",
)
@click.option(
    "--selftest",
    is_flag=True,
    help="Also refine a generated clip with tiny random models (no downloads, ~20 s on a CPU).",
)
@click.pass_obj
def command(env: Environment, weights: Path | None, selftest: bool) -> None:
    """Check the installation: torch, GPUs, codecs, and which weights are found where."""
    from rich.table import Table

    from vidrefine.checkpoints.weights import (
        ALL_WEIGHTS,
        OPTIONAL_WEIGHTS,
        locate,
        search_path,
        total_gb,
    )

    system = Table("component", "state", title="system", show_header=False)
    for name, state in (*torch_rows(), *distributed_rows(), *av_rows()):
        system.add_row(name, state)
    env.console.print(system)
    folders = search_path(weights)
    env.console.print("weights are looked for in (first wins):")
    for index, folder in enumerate(folders, 1):
        exists = "" if folder.is_dir() else " (does not exist)"
        env.console.print(f"  {index}. {folder}{exists}")
    found = locate((*ALL_WEIGHTS, *OPTIONAL_WEIGHTS), folders)
    env.console.print(weights_table((*ALL_WEIGHTS, *OPTIONAL_WEIGHTS), found))
    where = shlex.quote(str(weights)) if weights is not None else None
    missing = tuple(w for w in ALL_WEIGHTS if found[w.name] is None)
    if missing:
        print_line(
            env, f"missing weights (~{total_gb(missing):.1f} GB) are fetched by: ", missing, where
        )
    optional = tuple(w for w in OPTIONAL_WEIGHTS if found[w.name] is None)
    if optional:
        uses = NEEDED_BY["captioner"]
        lead = f"the captioner (~{total_gb(optional):.1f} GB; {uses}) is fetched by: "
        print_line(env, lead, optional, where)
    if selftest:
        run_selftest_command(env)


def print_line(env: Environment, lead: str, files: Sequence[WeightFile], where: str | None) -> None:
    """`lead` and the command that fetches `files`, unwrapped (to copy and paste)."""
    from vidrefine.checkpoints.weights import download_command

    line = lead + download_command(files, where)
    env.console.print(line, soft_wrap=True, markup=False, highlight=False)


def run_selftest_command(env: Environment) -> None:
    """Run the whole stage-II path on tiny random weights and report what it measured."""
    from vidrefine.pipeline.selftest import run_selftest

    env.note("selftest: refining a generated clip with tiny random models ...")
    report = run_selftest()
    height, width = report.output_hw
    env.console.print(
        f"selftest passed: {report.input_frames} frames in, {report.output_frames} out at "
        f"{width}x{height}, {report.audio_streams} audio stream(s) kept, {report.seconds:.1f} s"
    )
