"""The fetch announcement ("fetching N weight entries (X GB) ...") is printed once the Hub has
answered, never right before "nothing was fetched" (subprocesses on a loopback HF_ENDPOINT).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.test_hub_unreachable import closed_port, error_lines, run_cli
from vidrefine.errors import ExitCode


class AnswersButWithholds(BaseHTTPRequestHandler):
    """A Hub that answers every file's metadata request and then refuses its transfer (404)."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "7")
        self.send_header("ETag", '"0123456789abcdef"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_download_prints_one_error_line_and_no_announcement_when_the_hub_is_unreachable(tmp_path):
    args = ["download", "--only", "vae,stage2,t5", "--weights", str(tmp_path / "w")]
    done = run_cli(args, tmp_path, closed_port())

    assert done.returncode == ExitCode.MISSING_WEIGHTS, done.stderr
    assert len(error_lines(done.stderr)) == 1, done.stderr
    assert done.stderr.strip().splitlines() == error_lines(done.stderr), done.stderr
    assert "fetching" not in done.stderr


def test_download_announces_what_it_fetches_as_soon_as_the_hub_answers(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), AnswersButWithholds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args = ["download", "--only", "vae,stage2", "--weights", str(tmp_path / "w")]
        done = run_cli(args, tmp_path, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()

    assert done.returncode == ExitCode.MISSING_WEIGHTS, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("vidrefine: fetching 2 weight entries (4.6 GB)"), lines[0]
    assert lines[1].startswith("vidrefine: error: could not fetch FoundationVision/FlashVideo/3d")
