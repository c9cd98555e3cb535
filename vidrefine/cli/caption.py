"""`vidrefine caption`: write a captions file (one caption per shot) for each clip, to read and
edit before `vidrefine upscale`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vidrefine.captioners import DEFAULT_CAPTIONER  # no torch: the protocol and discovery
from vidrefine.cli.environment import Environment
from vidrefine.cli.options import shot_options, weights_options
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput

if TYPE_CHECKING:  # torch and PyAV load when the command runs, not for --help
    from vidrefine.captioners.clip import CaptionSession, ShotSpan
    from vidrefine.io.probe import MediaInfo

OUTPUT_HELP = "Captions file (one clip) or folder (several) [beside each clip: CLIP.captions.srt]."
CAPTIONER_HELP = f"Captioner plugin (entry-point group vidrefine.captioners) [{DEFAULT_CAPTIONER}]."


def captions_targets(clips: list[Path], output: str | None) -> Callable[[Path], Path]:
    """Where each clip's captions file goes: the sidecar, the -o file (one clip), or
    `<-o folder>/<clip>.captions.srt` (the folder is made when the first file is written).
    """
    from vidrefine.captions import SIDECAR_SUFFIX, sidecar_captions

    if output is None:
        return sidecar_captions
    target = Path(output).expanduser()
    if len(clips) == 1 and not target.is_dir() and not output.endswith("/"):
        return lambda _: target
    if target.exists() and not target.is_dir():
        raise BadInput(f"{len(clips)} clips need -o to be a folder, not the file {target}")
    return lambda clip: target / (clip.stem + SIDECAR_SUFFIX)


def shot_finder(config: RunConfig) -> Callable[[MediaInfo], Sequence[ShotSpan] | None]:
    """`shots(probe)`: the probed clip's shots as `upscale` plans them with `config`, or None
    (the whole clip as one shot) when `config` turns detection off.
    """
    from vidrefine.pipeline.shots import planned_shots

    return lambda info: planned_shots(info, config)


def open_session(
    name: str, *, weights: Path | None, offline: bool, vram_gb: float | None, env: Environment
) -> CaptionSession:
    """The captioner `name`, loaded: its weights found or fetched, its phase checked against
    the device's memory (DoesNotFit) before anything loads.
    """
    from vidrefine.captioners.clip import CaptionSession
    from vidrefine.pipeline.devices import device_facts
    from vidrefine.plan.memory import plan_captioner
    from vidrefine.runtime.distributed import rank_device

    device = rank_device()  # under torchrun, this rank's own GPU
    facts = device_facts(device)
    return CaptionSession.open(
        name,
        weights_dir=weights,
        offline=offline,
        device=device,
        fits=lambda captioner: plan_captioner(captioner.memory_gb, facts, vram_gb),
        announce=env.note,
        progress=env.progress(),
    )


def caption_clips(
    session: CaptionSession,
    clips: list[Path],
    *,
    output: Callable[[Path], Path],
    shots: Callable[[MediaInfo], Sequence[ShotSpan] | None],
    overwrite: bool,
    env: Environment,
) -> list[tuple[Path, Any]]:
    """Caption `clips` with a loaded session and write their files, noting each one."""
    from vidrefine.captioners.clip import caption_files

    def note(path: Path, cues: tuple[Any, ...]) -> None:
        env.note(f"wrote {path} ({len(cues)} shot{'s' if len(cues) != 1 else ''})")

    return caption_files(
        session, clips, shots_for=shots, output=output, overwrite=overwrite, on_write=note
    )


def caption_across_ranks(
    name: str,
    clips: list[Path],
    output: Callable[[Path], Path],
    config: RunConfig,
    *,
    overwrite: bool,
    weights: Path | None,
    offline: bool,
    env: Environment,
) -> None:
    """Caption `clips` into `output(clip)` with the captioner `name`.

    Under torchrun the ranks share the clips (handed out one at a time, each rank on its own
    GPU) and wait for each other at the end, so every file exists before any rank goes on; a
    rank loads the captioner on the first clip it gets. In one process: every clip, in order.
    """
    from vidrefine.runtime.distributed import barrier, hand_out, init_distributed, rank_device

    init_distributed(rank_device().type)
    shots = shot_finder(config)
    session = None
    try:
        for _, clip in hand_out(clips):
            if session is None:
                session = open_session(
                    name, weights=weights, offline=offline, vram_gb=config.vram_gb, env=env
                )
            caption_clips(session, [clip], output=output, shots=shots, overwrite=overwrite, env=env)
    finally:
        if session is not None:
            session.close()
    barrier()


@click.command(name="caption")
@click.argument("clips", nargs=-1, type=click.Path(path_type=Path), metavar="CLIP...")
@click.option("-o", "--output", metavar="PATH", help=OUTPUT_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing captions files.")
@click.option("--captioner", default=DEFAULT_CAPTIONER, metavar="NAME", help=CAPTIONER_HELP)
@click.option("--list-captioners", is_flag=True, help="List the installed captioners and exit.")
@shot_options
@weights_options
@click.pass_obj
def command(
    env: Environment,
    clips: tuple[Path, ...],
    output: str | None,
    overwrite: bool,
    captioner: str,
    list_captioners: bool,
    shots: bool | None,
    cut_threshold: float | None,
    weights: Path | None,
    offline: bool,
) -> None:
    """Write a captions file (SRT, one caption per shot) for each CLIP, with a vision-language
    model; read and edit it, then `vidrefine upscale CLIP` uses it.

    \b
    vidrefine caption clip.mp4            # -> clip.captions.srt
    vidrefine caption clips/ -o captions/
    """
    if list_captioners:
        print_captioners(env)
        return
    from vidrefine.captioners.clip import check_targets
    from vidrefine.cli.batch import expand_inputs

    files, _ = expand_inputs(clips)
    targets = captions_targets(files, output)
    check_targets([(clip, targets(clip)) for clip in files], overwrite=overwrite)
    flags = {"shots": shots, "cut_threshold": cut_threshold}
    config = RunConfig(**{key: value for key, value in flags.items() if value is not None})
    where = {"weights": weights, "offline": offline}
    caption_across_ranks(captioner, files, targets, config, overwrite=overwrite, env=env, **where)


AUTO_CAPTION = "auto"  # `upscale --caption auto`


def auto_captions(
    inputs: tuple[Path, ...],
    config: RunConfig,
    *,
    weights: Path | None,
    offline: bool,
    env: Environment,
) -> None:
    """`upscale --caption auto`: write the captions file beside each clip that has none (kept
    afterwards, to read and edit), with the captioner loaded once and released before stage II.
    """
    from vidrefine.captioners.clip import check_targets
    from vidrefine.captions import sidecar_captions
    from vidrefine.cli.batch import expand_inputs

    files, _ = expand_inputs(inputs)
    todo = []
    for clip in files:
        if sidecar_captions(clip).exists():
            env.note(
                f"using the captions file {sidecar_captions(clip)} (delete it to caption anew)"
            )
        else:
            todo.append(clip)
    if not todo:
        return
    check_targets([(clip, sidecar_captions(clip)) for clip in todo], overwrite=False)
    where = {"weights": weights, "offline": offline}
    caption_across_ranks(
        DEFAULT_CAPTIONER, todo, sidecar_captions, config, overwrite=False, env=env, **where
    )


def print_captioners(env: Environment) -> None:
    """The installed captioners: name, package, and why a broken one cannot be used."""
    from rich.table import Table

    from vidrefine.captioners import discover_captioners

    table = Table("captioner", "package", "status", title="captioners")
    for name, entry in discover_captioners().items():
        table.add_row(name, entry.package, entry.error or "ok")
    env.console.print(table)
