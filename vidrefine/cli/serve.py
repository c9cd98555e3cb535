"""`vidrefine serve`: the page (preview, refine, text-to-video queue) on this machine's browser."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vidrefine.cli.environment import Environment
from vidrefine.cli.options import weights_options
from vidrefine.errors import BadInput

if TYPE_CHECKING:
    from vidrefine.web.paths import Folders
    from vidrefine.web.server import ServeOptions


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
@click.option(
    "--adapters",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    help="Folder of tuned adapters (vidrefine tune) the page offers in its Adapter list.",
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

    The other options (host, port, preset, weights, outputs, upload cap, generator, adapters) are
    `ServeOptions` fields, passed through as they are.
    """
    from vidrefine.presets import load_config
    from vidrefine.web.paths import Folders
    from vidrefine.web.server import check_serving, parse_auth, read_auth_file

    if auth and auth_file:
        raise BadInput("give --auth or --auth-file, not both")
    credentials = parse_auth(auth, "--auth") if auth else None
    if auth_file is not None:
        credentials = read_auth_file(auth_file)
    # before any folder is made, any weight looked for (or fetched) or anything slow imported
    check_serving(settings["host"], credentials, settings["max_upload_gb"], settings["port"])
    load_config(settings["preset"], source="--preset")  # a bad preset stops here
    folders = Folders.at(work or default_work_folder(), settings.pop("outputs"))
    serve_page(env, folders, functools.partial(serve_options, env, folders, credentials, settings))


def serve_options(
    env: Environment, folders: Folders, auth: tuple[str, str] | None, settings: dict[str, Any]
) -> ServeOptions:
    """The server's options, with stage II's weights found (or fetched, announced)."""
    from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, resolve
    from vidrefine.web.server import ServeOptions

    paths = resolve(
        UPSCALE_WEIGHTS,
        weights_dir=settings["weights"],
        offline=settings["offline"],
        announce=env.note,
    )
    official = {w.name: w.size_gb for w in UPSCALE_WEIGHTS}
    return ServeOptions(
        work=folders.work,
        outputs=folders.outputs,
        auth=auth,
        weight_paths=paths,
        official_gb=official,
        **settings,
    )


def serve_page(env: Environment, folders: Folders, options: Callable[[], ServeOptions]) -> None:
    """Hold the work folder (one server per folder), find the weights, clean what a killed run
    left, and serve until SIGTERM or Ctrl-C. A start that fails leaves no folder it made.
    """
    from vidrefine.cli.batch import remove_empty_folders, remove_stale_temps_in
    from vidrefine.web.lock import WorkLock
    from vidrefine.web.server import start

    made, started = folders.make_work(), False
    try:
        with WorkLock(folders.work):
            if folders.readable_by_others():
                env.warn(
                    f"the work folder {folders.work} is readable by other users, who can see "
                    f"the uploads there: chmod 700 {folders.work} to keep them private"
                )
            chosen = options()
            made += folders.make()
            remove_stale_temps_in(folders.written_here(), env.note)
            running = start(chosen, folders)
            env.note(f"serving on http://{chosen.host}:{chosen.port} (work folder {folders.work})")
            started = True
            running.serve_until_stopped(env.note)
    except BaseException:
        if not started:
            remove_empty_folders(made)
        raise
