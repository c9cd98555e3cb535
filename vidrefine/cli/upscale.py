"""`vidrefine upscale`: refine clips to 1080p (or another size) with the stage-II model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vidrefine.cli.batch import (
    UpscaleJob,
    make_output_folders,
    plan_upscale_jobs,
    remove_stale_temps_in,
    removed_on_failure,
    short_caption_warnings,
    upscale_job,
)
from vidrefine.cli.caption import AUTO_CAPTION, auto_captions
from vidrefine.cli.compare import check_upscale_report, report_after_upscale, report_option
from vidrefine.cli.environment import Environment
from vidrefine.cli.options import (
    build_config,
    print_config,
    run_options,
    shot_options,
    weights_options,
)
from vidrefine.cli.scaleout import output_ranks, parallel_option, print_rank_lines
from vidrefine.config import RunConfig
from vidrefine.errors import VidrefineError


@click.command(name="upscale")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="Output file (one input) or folder (several inputs or a folder) [beside each input].",
)
@click.option(
    "-c",
    "--caption",
    metavar="TEXT",
    help="What the clip shows (long, detailed); `auto`: caption each shot with a model first "
    "(kept as INPUT.captions.srt).",
)
@click.option(
    "--caption-file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Read the caption from a text file [default: the sidecar INPUT.txt].",
)
@click.option(
    "--captions",
    type=click.Path(path_type=Path),
    metavar="FILE|DIR",
    help="Captions per shot, an SRT file (docs/captions.md); a folder holds "
    "NAME.captions.srt per clip [default: the sidecar INPUT.captions.srt].",
)
@run_options
@shot_options
@weights_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--no-resume", is_flag=True, help="Ignore windows kept from an interrupted run.")
@click.option("--json", "as_json", is_flag=True, help="Print the results and plans as JSON.")
@report_option("After the run, write a quality report (as `vidrefine compare --report`) into DIR.")
@parallel_option
@click.pass_obj
def command(
    env: Environment,
    inputs: tuple[Path, ...],
    output: str | None,
    caption: str | None,
    caption_file: Path | None,
    captions: Path | None,
    weights: Path | None,
    offline: bool,
    overwrite: bool,
    no_resume: bool,
    as_json: bool,
    report: Path | None,
    parallel: str,
    show_config: bool,
    **run_flags: Any,
) -> None:
    """Refine INPUT clips (files or folders) to high resolution, keeping timing and audio.

    \b
    vidrefine upscale clip.mp4 --caption "A red fox trots through snow ..."
    vidrefine upscale clips/ -o refined/ --preset fast
    """
    config = build_config(**run_flags)
    if show_config:
        print_config(env, config, run_flags["preset"])
        return
    jobs = plan_upscale_jobs(
        inputs,
        output,
        caption=caption,
        caption_file=caption_file,
        size=config.size,
        overwrite=overwrite,
        captions=captions,
    )
    if report is not None:  # checked before any weight is loaded or clip captioned
        sources, outputs = [job.input for job in jobs], [job.output for job in jobs]
        check_upscale_report(report, outputs, inputs=sources, overwrite=overwrite)
    if caption == AUTO_CAPTION:  # caption every clip first; its captions file is kept, then read
        auto_captions(
            tuple(j.input for j in jobs), config, weights=weights, offline=offline, env=env
        )
        several = len(jobs) > 1  # the outputs were checked: only the captions are new
        jobs = [upscale_job(job.input, job.output, several=several) for job in jobs]
    for warning in short_caption_warnings(jobs):
        env.note(f"warning: {warning}")
    remove_stale_temps_in([job.output.parent for job in jobs], env.note)
    with removed_on_failure(make_output_folders(jobs)):
        run_refine(
            jobs,
            config,
            weights_dir=weights,
            offline=offline,
            overwrite=overwrite,
            resume=not no_resume,
            as_json=as_json,
            env=env,
            parallel=parallel,
        )
    if report is not None:
        pairs = [(job.input, job.output) for job in jobs]
        report_after_upscale(pairs, report, overwrite=overwrite, env=env)


def run_refine(
    jobs: list[UpscaleJob],
    config: RunConfig,
    *,
    weights_dir: Path | None,
    offline: bool,
    overwrite: bool,
    resume: bool,
    as_json: bool,
    env: Environment,
    parallel: str = "auto",
) -> None:
    """Refine every job with one set of loaded models, then print a summary table.

    Under torchrun every rank runs this: the ranks share the clips as `parallel` says, and only
    rank 0 prints the table (with a line per rank) and fails for the clips that failed.
    """
    from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, resolve
    from vidrefine.pipeline.batch import JobFailure, StageTwoSession, probe_jobs
    from vidrefine.pipeline.refine import RefineJob
    from vidrefine.runtime.distributed import init_distributed, local_main_first, rank_device
    from vidrefine.runtime.distributed import shutdown as leave_ranks

    clips = probe_jobs(
        [RefineJob(job.input, job.output, job.caption, job.captions) for job in jobs]
    )
    if len(clips) == 1 and isinstance(clips[0], JobFailure) and clips[0].cause is not None:
        raise clips[0].cause  # a bad file fails here, before any weights are fetched or loaded
    device = rank_device()
    rank = init_distributed(device.type)
    with local_main_first():  # one download per machine; the other ranks then find the files
        paths = resolve(
            UPSCALE_WEIGHTS, weights_dir=weights_dir, offline=offline, announce=env.note
        )
    session = StageTwoSession(paths, config, device=device, progress=env.progress())
    results = session.refine(clips, overwrite=overwrite, resume=resume, parallel=parallel)
    leave_ranks()
    if not rank.is_main:
        return  # rank 0 reports every clip, and fails for those that failed
    ranks = output_ranks(session.rank_reports)
    print_summary(results, env, ranks)
    print_rank_lines(session.rank_reports, env)
    if as_json:
        rows = [result_dict(r) | _rank_field(r, ranks) for r in results]
        env.stdout.write(json.dumps(rows, indent=2) + "\n")
    failed = [r for r in results if isinstance(r, JobFailure)]
    if len(results) == 1 and failed and failed[0].cause is not None:
        raise failed[0].cause  # one clip: its own line and exit code
    codes = {f.cause.exit_code for f in failed if f.cause is not None}
    if failed and len(codes) == 1 and all(f.cause is not None for f in failed):
        err = VidrefineError(f"{len(failed)} of {len(results)} clips failed (see above)")
        err.exit_code = codes.pop()
        raise err
    if failed:
        raise VidrefineError(f"{len(failed)} of {len(results)} clips failed (see above)")


def _rank_field(result: Any, ranks: dict[str, int]) -> dict[str, int]:
    """`{"rank": N}` for an output rank N made under torchrun, else nothing."""
    rank = ranks.get(str(result.job.output))
    return {} if rank is None else {"rank": rank}


def result_dict(result: Any) -> dict[str, Any]:
    """One job's outcome for `--json`: files, counts, times, and the plan it ran."""
    from vidrefine.pipeline.batch import JobFailure

    job = {"input": str(result.job.input), "output": str(result.job.output)}
    if isinstance(result, JobFailure):
        return {**job, "error": result.error}
    return {
        **job,
        "frames": result.frames,
        "windows": result.windows,
        "reused_windows": result.reused_windows,
        "skipped": result.skipped,
        "seconds": result.seconds,
        "peak_memory_bytes": result.peak_memory_bytes,
        "plan": result.plan.to_dict(),
    }


def print_summary(
    results: list[Any], env: Environment, ranks: dict[str, int] | None = None
) -> None:
    """One row per job: output, size, frames, windows reused, time per phase, peak memory; a job
    whose output was already done says "skipped". With `ranks` (output -> the rank that made
    it, under torchrun) the output's rank follows its name.
    """
    from rich.table import Table

    from vidrefine.pipeline.batch import JobFailure

    table = Table(title="vidrefine upscale", show_lines=False)
    for column in ("input", "output", "size", "frames", "windows", "seconds", "peak GB"):
        table.add_column(column)
    for r in results:
        if isinstance(r, JobFailure):
            table.add_row(r.job.input.name, "[red]failed[/red]", "", "", "", "", r.error[:60])
            continue
        size = f"{r.output_hw[1]}x{r.output_hw[0]}"
        if r.skipped:
            table.add_row(r.job.input.name, str(r.job.output), size, "", "skipped", "", "")
            continue
        phases = " ".join(f"{k} {v:.1f}" for k, v in r.seconds.items())
        rank = (ranks or {}).get(str(r.job.output))
        table.add_row(
            r.job.input.name,
            str(r.job.output) + (f" (rank {rank})" if rank is not None else ""),
            size,
            str(r.frames),
            f"{r.windows} ({r.reused_windows} reused)" if r.reused_windows else str(r.windows),
            phases,
            f"{r.peak_memory_bytes / 1e9:.2f}",
        )
    env.err_console.print(table)
