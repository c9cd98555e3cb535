"""`vidrefine t2v`: text to low-res previews (a generator plugin), then 1080p through stage II."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from vidrefine.captions import read_text_file
from vidrefine.cli.batch import missing_folders, remove_stale_temps_in, removed_on_failure
from vidrefine.cli.environment import Environment
from vidrefine.cli.options import build_config, print_config, run_options, weights_options
from vidrefine.config import RunConfig, knob_complaint
from vidrefine.errors import BadInput
from vidrefine.plugins import GENERATOR_GROUP, discover_generators

DEFAULT_GENERATOR = "flashvideo-stage1"
_ASCII_DIGITS = re.compile(r"[0-9]+")


def read_prompt_file(path: Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    lines = read_text_file(path, "prompt file").splitlines()
    prompts = [" ".join(line.split()) for line in lines]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise BadInput(f"prompt file {path} has no prompts (blank and # lines are skipped)")
    return prompts


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; anything else (empty items, negatives, repeats, seeds outside the
    `seed` setting's limits) is BadInput.
    """
    seeds: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not _ASCII_DIGITS.fullmatch(item):  # str.isdigit() also takes "²", which int() refuses
            raise BadInput(f"--seeds {text!r}: {item!r} is not a seed; use e.g. --seeds 0,1,2")
        seed = int(item)
        complaint = knob_complaint("seed", seed)  # the one rule for a seed, as --seed has
        if complaint is not None:
            raise BadInput(f"--seeds {text!r}: {seed} {complaint}")
        if seed in seeds:
            raise BadInput(f"--seeds {text!r}: seed {seed} is listed twice")
        seeds.append(seed)
    return seeds


def gather_prompts(prompt: str | None, prompt_file: Path | None) -> list[str]:
    """Exactly one of --prompt and --prompt-file."""
    if prompt is not None and prompt_file is not None:
        raise BadInput("give --prompt or --prompt-file, not both")
    if prompt_file is not None:
        return read_prompt_file(prompt_file)
    if prompt is None or not prompt.strip():
        raise BadInput("no prompt: pass --prompt TEXT or --prompt-file FILE (one prompt a line)")
    return [" ".join(prompt.split())]


def check_output_folder(folder: Path) -> None:
    """The output folder may exist (as a folder) or be creatable; nothing is created here."""
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"-o {folder} is a file; t2v writes several files into a folder")


def show_generators(env: Environment) -> None:
    """Print the installed generator plugins; a broken one is listed with its error."""
    found = discover_generators(warn=lambda message: env.note(f"warning: {message}"))
    if not found:
        env.stdout.write(
            f"no generators installed (entry-point group {GENERATOR_GROUP}); "
            "install vidrefine with `pip install -e .` to register the bundled one\n"
        )
        return
    from rich.table import Table

    table = Table("name", "object", "package", "status", title="generators")
    for entry in found.values():
        status = "ok" if entry.ok else "broken (see the warning above)"
        table.add_row(entry.name, entry.value, entry.package, status)
    env.console.print(table)


@click.command(name="t2v")
@click.option("-p", "--prompt", metavar="TEXT", help="One prompt (long scene descriptions).")
@click.option(
    "--prompt-file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Prompts, one per line; blank lines and # comments are skipped.",
)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds: 0,1,2.")
@click.option("--preview-only", is_flag=True, help="Write the low-res previews only.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("t2v-out"),
    show_default=True,
    metavar="FOLDER",
    help="Folder for previews, refined clips and the manifest.",
)
@click.option(
    "--generator", default=DEFAULT_GENERATOR, show_default=True, help="Generator plugin name."
)
@click.option("--list-generators", is_flag=True, help="List installed generators and exit.")
@run_options
@weights_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.pass_obj
def command(
    env: Environment,
    prompt: str | None,
    prompt_file: Path | None,
    seeds: str,
    preview_only: bool,
    output: Path,
    generator: str,
    list_generators: bool,
    weights: Path | None,
    offline: bool,
    overwrite: bool,
    show_config: bool,
    **run_flags: Any,
) -> None:
    """Generate clips from text: previews first, then refined to 1080p.

    \b
    vidrefine t2v --prompt "A lighthouse on a cliff at dusk ..." --seeds 0,1
    vidrefine t2v --prompt-file prompts.txt --preview-only -o previews/
    """
    if list_generators:
        show_generators(env)
        return
    config = build_config(**run_flags)
    if show_config:
        print_config(env, config, run_flags["preset"])
        return
    prompts = gather_prompts(prompt, prompt_file)
    seed_list = parse_seeds(seeds)
    check_output_folder(output)
    remove_stale_temps_in([output], env.note)
    with removed_on_failure(missing_folders(output)):  # the pipeline creates them
        run_t2v(
            prompts,
            seed_list,
            config,
            output_dir=output,
            preview_only=preview_only,
            generator=generator,
            weights_dir=weights,
            offline=offline,
            overwrite=overwrite,
            env=env,
        )


def run_t2v(
    prompts: list[str],
    seeds: list[int],
    config: RunConfig,
    *,
    output_dir: Path,
    preview_only: bool,
    generator: str,
    weights_dir: Path | None,
    offline: bool,
    overwrite: bool,
    env: Environment,
) -> None:
    """Generate every (prompt, seed) preview, then refine each; print where everything went."""
    from vidrefine.pipeline.t2v import generate_videos
    from vidrefine.pipeline.t2v_manifest import manifest_path
    from vidrefine.runtime.distributed import shutdown as leave_ranks

    jobs = generate_videos(
        prompts,
        seeds,
        config,
        output_dir=output_dir,
        preview_only=preview_only,
        generator=generator,
        weights_dir=weights_dir,
        offline=offline,
        overwrite=overwrite,
        progress=env.progress(),
    )
    leave_ranks()  # under torchrun: every rank is done (a no-op in one process)
    if env.rank:
        return  # rank 0 lists every clip of every rank
    from rich.table import Table

    table = Table("prompt", "seed", "preview", "refined", title="vidrefine t2v")
    for job in jobs:
        refined = str(job.output) if job.output is not None else "-"
        table.add_row(f"{job.prompt_number}", str(job.seed), str(job.preview), refined)
    env.err_console.print(table)
    env.note(f"manifest: {manifest_path(output_dir)}")
