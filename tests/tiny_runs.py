"""The tiny end-to-end settings and a CLI runner that the end-to-end tests share."""

from __future__ import annotations

import os

from click.testing import CliRunner

# Small windows (13 frames, stride 8) keep the tiny models fast on two CPU cores.
TEST_PRESET = """
crf = 0
steps = 2
window_latent = 4
window_overlap_latent = 2
vae_mode = "whole"
"""


def run_cli(args: list[str]) -> tuple[int, str]:
    """`vidrefine ARGS` in this process: (exit code, stdout and stderr together)."""
    from vidrefine.cli import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def one_thread_environment() -> dict[str, str]:
    """This process's environment as it is now (the test's isolated caches included), with one
    OpenMP thread: on two shared cores a second thread mostly waits for the first at every op.
    """
    return {**os.environ, "OMP_NUM_THREADS": "1"}
