"""One `vidrefine serve` (tiny weights, a free port) and one headless Chromium for the web tests.

Both start once a session, when the first web test asks for them; the browser is the system's
Chromium driven through its chromedriver (`.ci/run` installs both), run with --no-sandbox since
CI runs as root.
"""

from __future__ import annotations

import os
import shutil
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
from tiny_runs import TEST_PRESET

MAX_UPLOAD_GB = 0.001  # 1 MB: the sample clip (71 kB) passes, a 2 MB file does not
START_TIMEOUT_S = 120
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


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


@pytest.fixture(scope="session")
def server(tmp_path_factory, stage2_weights) -> Iterator[Server]:
    """`vidrefine serve` on a free port with the tiny weights, 64p output and a 1 MB upload cap."""
    root = tmp_path_factory.mktemp("serve")
    preset = root / "web.toml"
    preset.write_text(TEST_PRESET + 'size = "64p"\n')
    port = free_port()
    env = {
        **os.environ,
        "VIDREFINE_CACHE": str(root / "resume"),
        "XDG_CACHE_HOME": str(root / "xdg"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("VIDREFINE_WEIGHTS", None)
    args = ["serve", "--port", str(port), "--weights", str(stage2_weights), "--preset", str(preset)]
    args += ["--work", str(root / "work"), "-o", str(root / "out")]
    args += ["--max-upload-gb", str(MAX_UPLOAD_GB)]
    log = root / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "vidrefine", *args], stdout=sink, stderr=sink, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, process, log)
        yield Server(url, (root / "work").resolve(), log)
    finally:
        process.terminate()  # as Ctrl-C; a server holding client connections is then killed
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
    driver = webdriver.Chrome(service=webdriver.ChromeService(found[1]), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
