"""Start the page safely: localhost unless a password is set, uploads capped, files fenced in,
and stop it cleanly.

`check_serving` refuses, with one line, what would fail later (listening beyond this machine
without `--auth`, a bad upload cap or port); `start` builds the page over one refiner and hands
it to Gradio; `Running.serve_until_stopped` waits for SIGTERM or Ctrl-C and then stops the
running job the way Cancel does before the process ends.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import ipaddress
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vidrefine.errors import BadInput, Interrupted, VidrefineError
from vidrefine.web.lock import LOCK_NAME

if TYPE_CHECKING:
    import gradio as gr

    from vidrefine.web.engine import Engine
    from vidrefine.web.jobs import Job, JobQueue
    from vidrefine.web.paths import Folders

LOOPBACK_NAMES = ("localhost",)
STOP_POLL_S = 0.2  # how often the main thread wakes up to take a signal


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
    official_gb: Mapping[str, float] = field(default_factory=dict)  # official size of each file
    adapters: Path | None = None  # `--adapters DIR`: tuned adapters offered by the page


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
    """`--max-upload-gb` in bytes; BadInput when not a positive, finite number."""
    if not (math.isfinite(max_upload_gb) and max_upload_gb > 0):
        raise BadInput(f"--max-upload-gb must be positive and finite, got {max_upload_gb}")
    return int(max_upload_gb * 1e9)


def check_port(host: str, port: int) -> None:
    """BadInput unless `port` is one this machine lets the page listen on now, on `host`.

    A bind with SO_REUSEADDR, as the server's own: a port left in TIME_WAIT passes, a port
    another server listens on does not.
    """
    if not 1 <= port <= 65535:
        raise BadInput(f"--port must be from 1 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise BadInput(f"cannot listen on {host}: {exc.strerror}; give another --host") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise port_refused(host, port, exc) from None


def port_in_use(host: str, port: int) -> BadInput:
    """The one line for a port another server listens on."""
    return BadInput(
        f"port {port} on {host} is in use (another server listens there); give another --port"
    )


def port_refused(host: str, port: int, exc: OSError) -> BadInput:
    """The one line for a port the page cannot listen on."""
    if exc.errno == errno.EADDRINUSE:
        return port_in_use(host, port)
    return BadInput(f"cannot listen on {host} port {port} ({exc.strerror}); give another --port")


def require_gradio() -> None:
    """VidrefineError naming the extra to install when Gradio is missing."""
    if importlib.util.find_spec("gradio") is None:
        raise VidrefineError(
            "vidrefine serve needs Gradio, which is not installed: pip install 'vidrefine[web]'"
        )


def check_serving(
    host: str, auth: tuple[str, str] | None, max_upload_gb: float, port: int | None = None
) -> int:
    """The checks that need nothing found, made or loaded: who may connect, Gradio, the upload
    cap (returned in bytes) and the port. `vidrefine serve` runs them before anything else.
    """
    check_access(host, auth)
    require_gradio()
    limit = upload_limit_bytes(max_upload_gb)
    if port is not None:
        check_port(host, port)
    return limit


@dataclass
class Running:
    """A page that is being served: its Gradio app, job queue and engine."""

    demo: gr.Blocks
    queue: JobQueue
    engine: Engine

    def serve_until_stopped(self, announce: Callable[[str], None]) -> None:
        """Block until SIGTERM or Ctrl-C (KeyboardInterrupt, see `vidrefine.cli.main`), then
        stop cleanly (`stop`) and raise Interrupted saying what was stopped.
        """
        try:
            while True:
                time.sleep(STOP_POLL_S)
        except KeyboardInterrupt:
            ignore_ctrl_c()
            stopped = self.stop(announce)
        jobs = ", ".join(job.id for job in stopped)
        kept = f"; job {jobs} interrupted, its finished windows kept: resume it" if jobs else ""
        raise Interrupted(f"interrupted: the page stopped{kept}")

    def stop(self, announce: Callable[[str], None]) -> list[Job]:
        """Close the page, cancel the running job at its next step (its temporary output is
        removed, its finished windows kept) and wait for whatever runs on the device.
        """
        self.demo.close(verbose=False)
        for job in self.queue.listing():
            if job.state == "running":
                announce(f"stopping: job {job.id} stops at its next step (kill -9 stops at once)")
        stopped = self.queue.shutdown()
        self.engine.device_lock.acquire()  # a preview or a caption run ends first; none starts
        return stopped


def ignore_ctrl_c() -> None:
    """From now on, Ctrl-C cannot cut the clean stop short (a second SIGTERM is ignored by
    `vidrefine.cli.main` already); kill -9 still stops the process at once.
    """
    with contextlib.suppress(ValueError):  # only the main thread can set handlers
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def start(options: ServeOptions, folders: Folders) -> Running:
    """Build the page over the refiner and start serving it (the job queue starts once the port
    is held); BadInput when the port was taken since `check_port`.
    """
    limit = upload_limit_bytes(options.max_upload_gb)
    os.environ["GRADIO_TEMP_DIR"] = str(folders.gradio_cache)  # uploads stay in the work folder
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo, queue, engine = build_page(options, folders)
    served = (folders.outputs, folders.previews, folders.t2v, folders.job_files)  # + reports
    try:
        demo.queue(default_concurrency_limit=4).launch(
            server_name=options.host,
            server_port=options.port,
            auth=options.auth,
            max_file_size=limit,
            allowed_paths=[str(p) for p in served],
            blocked_paths=[str(folders.jobs_file), str(folders.work / LOCK_NAME)],
            quiet=True,
            show_error=True,
            footer_links=["api"],
            prevent_thread_lock=True,
        )
    except OSError as exc:  # Gradio's "Cannot find empty port"
        raise port_in_use(options.host, options.port) from exc
    queue.start()
    return Running(demo, queue, engine)


def build_page(options: ServeOptions, folders: Folders) -> tuple[gr.Blocks, JobQueue, Engine]:
    """The Gradio Blocks over a refiner (its models load on first use) and a job queue that is
    not started yet.
    """
    from vidrefine.pipeline.api import Refiner
    from vidrefine.presets import load_config
    from vidrefine.web.app import build
    from vidrefine.web.engine import Engine
    from vidrefine.web.handlers import Page
    from vidrefine.web.jobs import JobQueue
    from vidrefine.web.notices import weights_note

    config = load_config(options.preset, source="--preset")
    refiner = Refiner(options.weight_paths, config)
    engine = Engine(
        refiner,
        options.preset,
        folders,
        generator=options.generator,
        weights=options.weights,
        offline=options.offline,
        adapters=None if options.adapters is None else options.adapters.resolve(),
    )
    queue = JobQueue(folders.jobs_file, engine.run, start=False)
    note = weights_note(options.weight_paths, options.official_gb)
    return build(Page(engine, queue, folders, weights_note=note)), queue, engine


__all__ = [
    "Running",
    "ServeOptions",
    "check_access",
    "check_port",
    "check_serving",
    "is_loopback",
    "parse_auth",
    "read_auth_file",
    "start",
]
