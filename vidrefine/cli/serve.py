"""`vidrefine serve`: the page (preview, refine, text-to-video queue) on this machine's browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from vidrefine.cli.environment import Environment
from vidrefine.cli.options import weights_options
from vidrefine.errors import BadInput


def default_work_folder() -> Path:
    """The per-user cache's `web/` folder (uploads, previews, the job list)."""
    from vidrefine.checkpoints.weights import vidrefine_cache

    return vidrefine_cache("web")


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=7860, show_default=True, type=int, help="Port to listen on.")
@click.option("--preset", default="default", metavar="NAME|FILE", help="The page's settings.")
@weights_options
@click.option(
    "-o",
    "--output",
    "outputs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("vidrefine-out"),
    show_default=True,
    help="Folder for refined clips (downloadable until removed).",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Private folder for uploads, previews and the job list [the user cache's web/].",
)
@click.option("--auth", metavar="USER:PASS", help="Ask for this user and password.")
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Read USER:PASS from the first line of FILE (keeps it out of `ps`).",
)
@click.option("--max-upload-gb", default=4.0, show_default=True, type=float, help="Largest upload.")
@click.option(
    "--generator",
    default="flashvideo-stage1",
    show_default=True,
    metavar="NAME",
    help="Text-to-video plugin of the Text to video tab (`vidrefine t2v --list-generators`).",
)
@click.pass_obj
def command(
    env: Environment,
    work: Path | None,
    auth: str | None,
    auth_file: Path | None,
    **settings: Any,
) -> None:
    """Serve the page: drop a clip, preview a window, refine, download; jobs queue up.

    \b
    vidrefine serve                          # http://127.0.0.1:7860
    vidrefine serve --host 0.0.0.0 --auth-file ~/.vidrefine-auth

    The other options (host, port, preset, weights, outputs, upload cap, generator) are
    `ServeOptions` fields, passed through as they are.
    """
    from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, resolve
    from vidrefine.presets import load_config
    from vidrefine.web.server import ServeOptions, check_serving, parse_auth, read_auth_file

    if auth and auth_file:
        raise BadInput("give --auth or --auth-file, not both")
    credentials = parse_auth(auth, "--auth") if auth else None
    if auth_file is not None:
        credentials = read_auth_file(auth_file)
    # before anything slow is imported or any weight is looked for (or fetched)
    check_serving(settings["host"], credentials, settings["max_upload_gb"])
    load_config(settings["preset"], source="--preset")  # a bad preset stops here
    paths = resolve(
        UPSCALE_WEIGHTS,
        weights_dir=settings["weights"],
        offline=settings["offline"],
        announce=env.note,
    )
    work = work or default_work_folder()
    options = ServeOptions(work=work, auth=credentials, weight_paths=paths, **settings)
    from vidrefine.web.server import serve

    serve(options, env.note)
