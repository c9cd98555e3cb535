"""What a run leaves behind when it is stopped or fails: no temporary files, no empty folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from t5_fixtures import tiny_caption
from tiny_runs import run_cli

from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.errors import ExitCode
from vidrefine.io.temps import TEMP_MARKER, host_tag

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def preset(tiny_preset) -> Path:
    return tiny_preset


def upscale(args: list[str]) -> tuple[int, str]:
    return run_cli(["upscale", *args])


def tiny_args(weights: Path, preset: Path) -> list[str]:
    return ["--weights", str(weights), "--preset", str(preset), "--size", "64p"]


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if TEMP_MARKER in p.name]


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_sigterm_exits_143_removes_the_temp_file_and_keeps_windows_when_sent_mid_run(
    tmp_path, stage2_weights, preset
):
    clip = make_clip(tmp_path / "in.mp4", frames=60, size_hw=(48, 64))
    out = tmp_path / "out" / "out.mp4"
    out.parent.mkdir()
    cache = tmp_path / "jobs"
    args = [str(clip.path), "-c", "a b c", "-o", str(out), *tiny_args(stage2_weights, preset)]
    env = {**os.environ, "VIDREFINE_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidrefine", "upscale", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if temps(out.parent) and list(cache.glob("*/window_*.safetensors")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ExitCode.TERMINATED == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("vidrefine: error: terminated") and "resume" in last, stderr
    assert "Traceback" not in stderr
    assert temps(out.parent) == [] and not out.exists()
    kept = len(list(cache.glob("*/window_*.safetensors")))
    assert kept >= 1
    rerun = CliRunner().invoke(
        cli, ["upscale", *args, "--json"], env={"VIDREFINE_CACHE": str(cache)}
    )
    assert rerun.exit_code == 0, rerun.output
    (result,) = json.loads(rerun.stdout)
    assert result["reused_windows"] == kept


def dead_temp(folder: Path, stem: str) -> Path:
    """A temporary file of ours that no process holds (its writer died), old enough to judge."""
    path = folder / f".{stem}{TEMP_MARKER}{dead_pid()}@{host_tag()}-abcd_123.mp4"
    path.write_bytes(b"x")
    then = time.time() - 60
    os.utime(path, (then, then))
    return path


def test_stale_temps_of_dead_runs_are_removed_when_a_run_writes_into_their_folder(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3, size_hw=(48, 64))
    folder = tmp_path / "out"
    folder.mkdir()
    stale = dead_temp(folder, "old")
    other = folder / ".notes.mp4"  # not ours: left alone
    other.write_bytes(b"x")
    code, text = upscale(
        [str(clip.path), "-c", "a", "-o", str(folder / "o.mp4"), "--offline", "--weights"]
        + [str(tmp_path / "none")]
    )
    assert code == ExitCode.MISSING_WEIGHTS, text
    assert not stale.exists() and other.exists()
    assert f"removed {stale}" in text


def test_folder_batch_skips_its_own_outputs_temps_and_hidden_files_when_run_into_itself(
    tmp_path, stage2_weights, preset
):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", frames=3, size_hw=(48, 64))
    (clips / "a.txt").write_text(tiny_caption(30))
    args = [str(clips), "-o", str(clips), *tiny_args(stage2_weights, preset)]
    code, text = upscale(args)
    assert code == 0, text
    assert (clips / "a_64p.mp4").is_file()
    dead_temp(clips, "a_64p")
    (clips / ".hidden.mp4").write_bytes(b"x")
    code, text = upscale(args)
    assert code == 0, text
    assert not (clips / "a_64p_64p.mp4").exists()
    assert sorted(p.name for p in clips.iterdir()) == [".hidden.mp4", "a.mp4", "a.txt", "a_64p.mp4"]


def test_folders_a_failed_run_created_are_removed_when_weights_are_missing(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3, size_hw=(48, 64))
    (tmp_path / "have").mkdir()
    (tmp_path / "none").mkdir()
    for out in (tmp_path / "nodir" / "sub" / "out.mp4", tmp_path / "have" / "new" / "o.mp4"):
        code, text = upscale(
            [str(clip.path), "-c", "a", "-o", str(out), "--offline"]
            + ["--weights", str(tmp_path / "none")]
        )
        assert code == ExitCode.MISSING_WEIGHTS, text
    assert not (tmp_path / "nodir").exists()
    assert (tmp_path / "have").is_dir() and not (tmp_path / "have" / "new").exists()


def test_t2v_output_folders_it_created_are_removed_when_interrupted(tmp_path, monkeypatch):
    import vidrefine.pipeline.t2v as t2v_pipeline

    def generate_then_stop(*args, output_dir, **kwargs):
        output_dir.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(t2v_pipeline, "generate_videos", generate_then_stop)
    out = tmp_path / "nodir" / "sub"
    result = CliRunner().invoke(cli, ["t2v", "--prompt", "a b c", "-o", str(out)])
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    assert not (tmp_path / "nodir").exists() and tmp_path.is_dir()
