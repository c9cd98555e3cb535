"""When the Hub cannot be reached, fetching fails at once, in one line, naming everything missing.

The CLI runs in a subprocess (huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT once, at
import) with HF_ENDPOINT on loopback: a closed port, or a tiny server that accepts and closes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.media import make_clip
from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, download_command
from vidrefine.errors import ExitCode


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AcceptAndClose:
    """A loopback server that accepts each connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def run_cli(args: list[str], tmp_path: Path, port: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "HF_TOKEN"}}
    env.pop("TRANSFORMERS_OFFLINE", None)
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HOME=str(tmp_path / "hf-home"),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    command = [sys.executable, "-m", "vidrefine", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def leftovers(folder: Path) -> list[str]:
    """`.lock` files and empty folders under `folder` (not counting `folder` itself)."""
    found = [str(p) for p in folder.rglob("*.lock")]
    found += [str(p) for p in folder.rglob("*") if p.is_dir() and not any(p.iterdir())]
    return found


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("vidrefine: error:")]


def test_upscale_names_every_missing_file_and_one_command_when_the_hub_is_unreachable(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    clip = make_clip(tmp_path / "in.mp4", frames=9, size_hw=(48, 64))
    args = ["upscale", str(clip.path), "-c", "a cat", "-o", str(tmp_path / "out.mp4")]
    done = run_cli([*args, "--weights", str(weights)], tmp_path, closed_port())

    assert done.returncode == ExitCode.MISSING_WEIGHTS, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    for weight in UPSCALE_WEIGHTS:
        assert weight.display_name in lines[0], lines[0]
    assert lines[0].count("vidrefine download") == 1, lines[0]
    assert f"`{download_command(UPSCALE_WEIGHTS, weights)}`" in lines[0], lines[0]
    assert "Retry" not in done.stderr + done.stdout, done.stderr
    assert leftovers(weights) == []


def test_download_enters_no_retry_loop_and_does_not_advise_itself_when_the_hub_drops_connections(
    tmp_path,
):
    weights = tmp_path / "weights"
    weights.mkdir()
    server = AcceptAndClose()
    try:
        args = ["download", "--only", "vae,t5", "--weights", str(weights)]
        done = run_cli(args, tmp_path, server.port)
    finally:
        server.close()

    assert done.returncode == ExitCode.MISSING_WEIGHTS, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "3d-vae.pt" in lines[0] and "t5-v1_1-xxl/" in lines[0], lines[0]
    assert "cannot be reached" in lines[0] and "copy" in lines[0], lines[0]
    assert "vidrefine download" not in lines[0], lines[0]
    assert "Retry" not in done.stderr + done.stdout, done.stderr
    assert server.connections <= 2, server.connections  # its retry loop would make six
    assert leftovers(weights) == []


@pytest.mark.parametrize("subset", ["stage2,t5"])
def test_download_leaves_no_new_folder_when_the_hub_is_unreachable_and_weights_dir_is_new(
    tmp_path, subset
):
    weights = tmp_path / "new" / "weights"
    args = ["download", "--only", subset, "--weights", str(weights)]
    done = run_cli(args, tmp_path, closed_port())

    assert done.returncode == ExitCode.MISSING_WEIGHTS, done.stderr
    assert len(error_lines(done.stderr)) == 1, done.stderr
    assert not weights.exists()
