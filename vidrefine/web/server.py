"""Start the page safely: localhost unless a password is set, uploads capped, files fenced in.

`check_access` refuses, with one line, to listen beyond this machine without `--auth`; `serve`
loads the refiner once, starts the job queue and hands the page to Gradio.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidrefine.errors import BadInput, VidrefineError

if TYPE_CHECKING:
    import gradio as gr

    from vidrefine.web.paths import Folders

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeOptions:
    """What `vidrefine serve` was asked for."""

    host: str
    port: int
    work: Path
    outputs: Path
    preset: str
    weights: Path | None
    offline: bool
    auth: tuple[str, str] | None
    max_upload_gb: float
    weight_paths: Mapping[str, Path]  # stage II's files, found (or fetched) before serving
    generator: str = "flashvideo-stage1"


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_access(host: str, auth: tuple[str, str] | None) -> None:
    """BadInput when the page would listen beyond this machine without a password."""
    if auth is None and not is_loopback(host):
        raise BadInput(
            f"refusing to listen on {host} without a password: anyone who can reach this "
            "machine could run jobs and download outputs; pass --auth USER:PASS or "
            "--auth-file FILE (or keep the default --host 127.0.0.1)"
        )


def parse_auth(text: str, source: str) -> tuple[str, str]:
    """'USER:PASS' -> (user, password); BadInput naming `source` when malformed."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise BadInput(f"{source}: expected USER:PASS with neither part empty")
    return user, password


def read_auth_file(path: Path) -> tuple[str, str]:
    """The USER:PASS on the first non-empty line of `path`."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the auth file {path}: {exc}") from exc
    if not lines:
        raise BadInput(f"the auth file {path} is empty; write USER:PASS on its first line")
    return parse_auth(lines[0], f"auth file {path}")


def upload_limit_bytes(max_upload_gb: float) -> int:
    """`--max-upload-gb` in bytes; BadInput when not positive."""
    if not max_upload_gb > 0:
        raise BadInput(f"--max-upload-gb must be positive, got {max_upload_gb}")
    return int(max_upload_gb * 1e9)


def require_gradio() -> None:
    """VidrefineError naming the extra to install when Gradio is missing."""
    if importlib.util.find_spec("gradio") is None:
        raise VidrefineError(
            "vidrefine serve needs Gradio, which is not installed: pip install 'vidrefine[web]'"
        )


def check_serving(host: str, auth: tuple[str, str] | None, max_upload_gb: float) -> int:
    """The checks that need nothing found or loaded: who may connect, Gradio, the upload cap
    (returned in bytes). `vidrefine serve` runs them before it looks for the weights.
    """
    check_access(host, auth)
    require_gradio()
    return upload_limit_bytes(max_upload_gb)


def serve(options: ServeOptions, announce: Callable[[str], None]) -> None:
    """Load the refiner, start the job queue and serve the page until interrupted."""
    from vidrefine.web.paths import Folders

    limit = check_serving(options.host, options.auth, options.max_upload_gb)
    folders = Folders.create(options.work, options.outputs)
    os.environ["GRADIO_TEMP_DIR"] = str(folders.gradio_cache)  # uploads stay in the work folder
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_page(options, folders)
    served = (folders.outputs, folders.previews, folders.t2v, folders.job_files)  # + reports
    announce(f"serving on http://{options.host}:{options.port} (work folder {folders.work})")
    demo.queue(default_concurrency_limit=4).launch(
        server_name=options.host,
        server_port=options.port,
        auth=options.auth,
        max_file_size=limit,
        allowed_paths=[str(p) for p in served],
        blocked_paths=[str(folders.jobs_file)],
        quiet=True,
        show_error=True,
        footer_links=["api"],
    )


def build_page(options: ServeOptions, folders: Folders) -> gr.Blocks:
    """The Gradio Blocks over a loaded refiner and a running job queue."""
    from vidrefine.pipeline.api import Refiner
    from vidrefine.presets import load_config
    from vidrefine.web.app import build
    from vidrefine.web.engine import Engine
    from vidrefine.web.handlers import Page
    from vidrefine.web.jobs import JobQueue

    config = load_config(options.preset, source="--preset")
    refiner = Refiner(options.weight_paths, config)
    engine = Engine(
        refiner,
        options.preset,
        folders,
        generator=options.generator,
        weights=options.weights,
        offline=options.offline,
    )
    queue = JobQueue(folders.jobs_file, engine.run)
    return build(Page(engine, queue, folders))


__all__ = ["ServeOptions", "check_access", "is_loopback", "parse_auth", "read_auth_file", "serve"]
