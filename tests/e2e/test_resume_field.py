"""Resuming in the field (issue 12): rerunning an interrupted batch finishes it, a finished
output is skipped rather than refused or recomputed, and a damaged kept window is recomputed.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from progress_fixtures import InterruptAfterWindows

from tests.e2e import test_upscale_e2e as e2e
from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.cli.batch import plan_upscale_jobs
from vidrefine.cli.environment import Environment
from vidrefine.errors import BadInput, ExitCode, OutputExists
from vidrefine.io.writer import VideoWriter

weights, preset = e2e.weights, e2e.preset  # the tiny official-format weights and 64p preset


def run(args: list[str], progress=None) -> tuple[int, str]:
    """`vidrefine upscale ARGS` with plain-line progress (or `progress`); exit code and stderr."""
    err = io.StringIO()
    env = Environment(io.StringIO(), err)
    if progress is not None:
        env.progress_factory = lambda _env: progress
    result = CliRunner().invoke(cli, ["upscale", *args], obj=env)
    return result.exit_code, err.getvalue()


def tiny_args(src: Path, out: Path, weights: Path, preset: Path, *extra: str) -> list[str]:
    return [str(src), "-c", "a b c", "-o", str(out), "--weights", str(weights)] + [
        "--preset",
        str(preset),
        "--size",
        "64p",
        *extra,
    ]


def tagged_clip(path: Path, tag: str) -> Path:
    """A real little video whose container carries a `vidrefine_job` tag."""
    timing = {"time_base": Fraction(1, 8), "fps": Fraction(8)}
    with VideoWriter(path, size_hw=(16, 16), **timing, metadata={"vidrefine_job": tag}) as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8), np.arange(2))
    return path


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDREFINE_CACHE", str(tmp_path / "jobs"))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_tagged_output_passes_planning_and_an_untagged_one_is_refused_when_it_exists(
    tmp_path, suffix
):
    src = make_clip(tmp_path / "in.mp4", frames=2, size_hw=(16, 16)).path
    untagged = make_clip(tmp_path / f"plain{suffix}", frames=2, size_hw=(16, 16)).path
    tagged = tagged_clip(tmp_path / f"done{suffix}", "0123abcd")
    plan = dict(caption="c", caption_file=None, size="64p", overwrite=False)
    with pytest.raises(OutputExists, match="--overwrite"):
        plan_upscale_jobs((src,), str(untagged), **plan)
    (job,) = plan_upscale_jobs((src,), str(tagged), **plan)
    assert job.output == tagged


def test_caption_file_that_is_a_folder_is_named_as_a_folder_when_given(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=2, size_hw=(16, 16)).path
    with pytest.raises(BadInput, match="is a folder, not a file"):
        plan_upscale_jobs(
            (src,), None, caption=None, caption_file=tmp_path, size="64p", overwrite=False
        )


def test_batch_skips_its_finished_clip_and_resumes_the_other_when_the_same_command_is_rerun(
    tmp_path, weights, preset
):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", frames=5, size_hw=(48, 64))  # one window
    make_clip(clips / "b.mp4", frames=20, size_hw=(48, 64))  # two windows
    out = tmp_path / "out"
    args = tiny_args(clips, out, weights, preset)
    code, text = run(args, progress=InterruptAfterWindows(2))  # a, then b's first window
    assert code == ExitCode.INTERRUPTED, text
    assert "run the same command again to resume" in text
    finished = (out / "a_64p.mp4").stat()
    assert not (out / "b_64p.mp4").exists()

    code, text = run(args)
    assert code == 0, text
    assert "a_64p.mp4: already done with these settings, skipped" in text
    assert "window 1: reused from an earlier run" in text  # b picks up its kept window
    assert "skipped" in text.split("vidrefine upscale")[-1]  # the summary table says so
    again = (out / "a_64p.mp4").stat()
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns)

    fresh = tmp_path / "fresh.mp4"
    code, text = run(tiny_args(clips / "b.mp4", fresh, weights, preset, "--no-resume"))
    assert code == 0, text
    np.testing.assert_array_equal(e2e.decoded(out / "b_64p.mp4"), e2e.decoded(fresh))


def test_finished_single_run_is_a_noop_and_other_settings_are_refused_when_rerun(
    tmp_path, weights, preset
):
    src = make_clip(tmp_path / "in.mp4", frames=5, size_hw=(48, 64)).path
    out = tmp_path / "out.mp4"
    code, text = run(tiny_args(src, out, weights, preset))
    assert code == 0, text
    finished = out.stat()

    code, text = run(tiny_args(src, out, weights, preset))
    assert code == 0, text
    assert "out.mp4: already done with these settings, skipped" in text

    code, text = run(tiny_args(src, out, weights, preset, "--seed", "7"))
    assert code == ExitCode.OUTPUT_EXISTS, text
    (line,) = [x for x in text.splitlines() if x.startswith("vidrefine: error: ")]
    assert "other settings" in line and "--overwrite" in line
    again = out.stat()
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, weights, preset) -> tuple[Path, np.ndarray]:
    """A two-window clip and its frames refined in one uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    src = make_clip(folder / "in.mp4", frames=20, size_hw=(48, 64)).path
    code, text = run(tiny_args(src, folder / "out.mp4", weights, preset, "--no-resume"))
    assert code == 0, text
    return src, e2e.decoded(folder / "out.mp4")


@pytest.mark.parametrize("damage", ["zero bytes", "truncated"])
def test_damaged_kept_window_is_recomputed_with_a_warning_when_the_run_is_resumed(
    tmp_path, weights, preset, reference, damage
):
    src, expected = reference
    out = tmp_path / "out.mp4"
    code, text = run(tiny_args(src, out, weights, preset), progress=InterruptAfterWindows(1))
    assert code == ExitCode.INTERRUPTED, text
    (kept,) = (tmp_path / "jobs").glob("*/window_00000.safetensors")
    size = kept.stat().st_size
    with kept.open("r+b") as f:
        f.truncate(0 if damage == "zero bytes" else size // 2)

    code, text = run(tiny_args(src, out, weights, preset))
    assert code == 0, text
    warnings = [line for line in text.splitlines() if "warning:" in line and "window 1" in line]
    assert len(warnings) == 1, text
    assert "reused" not in text
    np.testing.assert_array_equal(e2e.decoded(out), expected)
