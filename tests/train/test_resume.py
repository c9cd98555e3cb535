"""Never lose a run: a kill mid-checkpoint keeps the previous one, --resume repeats an
uninterrupted run bit for bit (same machine, same process settings), SIGTERM saves and stops.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.train.conftest import invoke
from tests.train.forked import run_forked
from vidrefine.train.checkpoint import RunFolder


def _args(cache: Path, run: Path, weights: Path, steps: int, *extra: str) -> list:
    return [
        "tune",
        "train",
        cache,
        "-o",
        run,
        "--steps",
        steps,
        "--full",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "1",
        "--log-every",
        "1",
        "--weights",
        weights,
        *extra,
    ]


def _latest(run: Path) -> dict[str, torch.Tensor]:
    weights, optimizer, state = RunFolder.load(RunFolder(run).latest())
    return {
        **weights,
        **{f"exp_avg.{k}": v["exp_avg"] for k, v in optimizer["optimizer"]["state"].items()},
    }


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in RunFolder(run).read_metrics() if "loss" in r]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tune_cache, tune_weights) -> Path:
    """Three uninterrupted steps, a checkpoint after each."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert run_forked(_args(tune_cache, run, tune_weights, 3)) == 0
    return run


def test_resume_after_a_kill_mid_checkpoint_repeats_the_straight_run_when_continued(
    straight, tune_cache, tune_weights, tmp_path
) -> None:
    run = tmp_path / "run"
    args = _args(tune_cache, run, tune_weights, 3)
    assert run_forked(args, kill_at="step-000003") == -signal.SIGKILL
    folder = RunFolder(run)
    assert [c.step for c in folder.complete()] == [1, 2]  # the killed write left step 2 usable
    assert any(p.name.startswith(".step-000003.partial-") for p in folder.checkpoints.iterdir())
    assert run_forked([*args, "--resume"]) == 0
    names = sorted(p.name for p in folder.checkpoints.iterdir())
    assert names == ["step-000001", "step-000002", "step-000003"]  # the partial one is gone
    ours, theirs = _latest(run), _latest(straight)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # bit for bit
    assert _losses(run) == _losses(straight)


class _SigtermAtStep:
    """A progress display that sends this process SIGTERM when step `at` is reported."""

    def __init__(self, at: int) -> None:
        self.at = at

    def task(self, label, total=None, unit="frames"):  # noqa: ANN001, ANN201
        from vidrefine.progress import NullProgress

        return NullProgress().task(label, total, unit)

    def info(self, message: str) -> None:
        if message.startswith(f"step {self.at}/"):
            os.kill(os.getpid(), signal.SIGTERM)

    def warn(self, message: str) -> None:
        pass


def test_sigterm_saves_a_checkpoint_and_stops_when_received(
    straight, tune_cache, tune_weights, tmp_path
) -> None:
    import io

    from vidrefine.cli import cli
    from vidrefine.cli.environment import Environment

    run, err = tmp_path / "run", io.StringIO()
    env = Environment(io.StringIO(), err, progress_factory=lambda _env: _SigtermAtStep(1))
    args = [str(a) for a in _args(tune_cache, run, tune_weights, 2)]
    result = CliRunner().invoke(cli, args, obj=env)
    assert result.exit_code == 143, err.getvalue()
    (line,) = err.getvalue().strip().splitlines()
    assert line.startswith("vidrefine: error: terminated (SIGTERM): interrupted at step 1")
    assert "--resume" in line
    assert [c.step for c in RunFolder(run).complete()] == [1]
    code, output = invoke(_args(tune_cache, run, tune_weights, 2, "--resume"))
    assert code == 0, output
    # the stop changed nothing (the straight run ran on one thread: sums may round otherwise)
    assert _losses(run) == pytest.approx(_losses(straight)[:2], rel=1e-5)
