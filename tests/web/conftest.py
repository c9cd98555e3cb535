"""One `vidrefine serve` (tiny weights, a free port) and one headless Chromium for the web tests.

Both start once a session, when the first web test asks for them; the browser is the system's
Chromium driven through its chromedriver (`.ci/run` installs both), run with --no-sandbox since
CI runs as root.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_runs import TEST_PRESET, one_thread_environment

from vidrefine.errors import ExitCode

MAX_UPLOAD_GB = 0.001  # 1 MB: the sample clip (71 kB) passes, a 2 MB file does not
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60  # a job stops at its next step, a preview runs to its end
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
# Any one command to chromedriver; Selenium's own default (the socket default, None) waits forever
# on a browser that stopped answering, and a CI run then hangs instead of failing.
DRIVER_TIMEOUT_S = 120
PAGE_LOAD_TIMEOUT_S = 60


ADAPTER = "tuned.safetensors"  # in the session server's adapters folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A running `vidrefine serve` and its folders."""

    url: str
    work: Path
    log: Path
    pid: int = 0


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vidrefine serve exited with {process.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"vidrefine serve did not answer within {START_TIMEOUT_S} s: {log.read_text()}")


def serve_environment(root: Path) -> dict[str, str]:
    """The environment of a test server: its own caches, no Hub, no analytics."""
    env = {
        # One compute thread: on two cores beside a busy browser, two OpenMP threads wait for
        # each other at every op (a 1-minute refine took 48 minutes once); one never waits.
        **one_thread_environment(),
        "VIDREFINE_CACHE": str(root / "resume"),
        "XDG_CACHE_HOME": str(root / "xdg"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("VIDREFINE_WEIGHTS", None)
    return env


def serve_command(root: Path, weights: Path, port: int, work: Path | None = None) -> list[str]:
    """`python -m vidrefine serve` with the tiny weights, 64p output and a 1 MB upload cap, its
    work folder `root/work` (or `work`) and outputs `root/out` (the preset is written in `root`).
    """
    preset = root / "web.toml"
    preset.write_text(TEST_PRESET + 'size = "64p"\n')
    args = ["serve", "--port", str(port), "--weights", str(weights), "--preset", str(preset)]
    args += ["--work", str(work or root / "work"), "-o", str(root / "out")]
    args += ["--max-upload-gb", str(MAX_UPLOAD_GB)]
    if (root / "adapters").is_dir():  # the session server's: one tuned adapter
        args += ["--adapters", str(root / "adapters")]
    return [sys.executable, "-m", "vidrefine", *args]


def start_server(
    root: Path, weights: Path, log_name: str = "serve.log"
) -> tuple[subprocess.Popen, Server]:
    """Start `serve_command` in `root` on a free port and wait until the page answers."""
    port = free_port()
    log = root / log_name
    with log.open("w") as sink:
        process = subprocess.Popen(
            serve_command(root, weights, port),
            stdout=sink,
            stderr=sink,
            env=serve_environment(root),
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, process, log)
    except BaseException:
        stop_server(process)
        raise
    return process, Server(url, (root / "work").resolve(), log, process.pid)


def stop_server(process: subprocess.Popen, how: int = signal.SIGTERM) -> int | None:
    """Stop a server with `how` (SIGTERM: as a service manager does); its exit code, or None
    when it was still there after `STOP_TIMEOUT_S` and had to be killed.
    """
    if process.poll() is None:
        process.send_signal(how)
    try:
        return process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


@pytest.fixture(scope="session")
def server(tmp_path_factory, stage2_weights) -> Iterator[Server]:
    """`vidrefine serve` on a free port with the tiny weights, 64p output, a 1 MB upload cap
    and `--adapters` holding `tuned.safetensors` (an adapter of the tiny DiT).
    """
    from lora_fixtures import write_adapter

    from vidrefine.checkpoints.dit import load_dit

    root = tmp_path_factory.mktemp("serve")
    (root / "adapters").mkdir()
    write_adapter(root / "adapters" / ADAPTER, load_dit(stage2_weights / "stage2.pt", stage=2))
    process, running = start_server(root, stage2_weights)
    try:
        yield running
    finally:
        code = stop_server(process, signal.SIGINT)  # Ctrl-C in its terminal
    log = running.log.read_text()
    assert code == ExitCode.INTERRUPTED and "terminate called" not in log, (code, log[-2000:])


def chromium() -> tuple[str, str] | None:
    """(browser, driver) of the system, or None."""
    browser = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def downloads(tmp_path_factory) -> Path:
    """Where the browser saves downloaded files."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads):
    """A headless Chromium (Selenium), reused by every browser test."""
    webdriver = pytest.importorskip("selenium.webdriver")
    found = chromium()
    if found is None:
        pytest.skip(
            "no Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1500")
    options.page_load_strategy = "eager"  # the tests wait for the page's own elements
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DRIVER_TIMEOUT_S)  # Selenium's client reads its timeout from here
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(found[1]), options=options)
    finally:
        socket.setdefaulttimeout(previous)
    driver.implicitly_wait(0)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    yield driver
    driver.quit()
