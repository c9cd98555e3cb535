"""Environment failures (a full disk, a damaged T5 folder) are one line and a fitting exit code."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from t5_fixtures import tiny_caption

from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.errors import ExitCode


@pytest.fixture(scope="module")
def preset(tiny_preset) -> Path:
    return tiny_preset


def upscale(clip: Path, out: Path, weights: Path, preset: Path) -> tuple[int, str]:
    args = [str(clip), "-c", tiny_caption(8), "-o", str(out), "--weights", str(weights)]
    result = CliRunner().invoke(cli, ["upscale", *args, "--preset", str(preset), "--size", "64p"])
    return result.exit_code, result.output


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("vidrefine: error:")]


def test_cli_names_cache_folder_and_space_and_keeps_windows_when_cache_disk_is_full(
    tmp_path, monkeypatch, stage2_weights, preset
):
    import safetensors.torch

    cache = tmp_path / "jobs"
    monkeypatch.setenv("VIDREFINE_CACHE", str(cache))
    real_save = safetensors.torch.save_file

    def save_until_full(tensors, filename, *args, **kwargs):
        if "window_00001" in str(filename):  # the second window finds the disk full
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_until_full)
    clip = make_clip(tmp_path / "in.mp4", frames=20, size_hw=(48, 64))
    code, text = upscale(clip.path, tmp_path / "out.mp4", stage2_weights, preset)

    assert code == ExitCode.ERROR, text
    lines = error_lines(text)
    assert len(lines) == 1, text
    assert "bug" not in text and "no space left" in lines[0], text
    assert str(cache) in lines[0] and " MB" in lines[0], lines[0]
    kept = sorted(p.name for p in cache.glob("*/*"))
    assert kept == ["window_00000.safetensors"], kept  # the finished window is intact, no .tmp
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("code_errno", [errno.ENOSPC, errno.EDQUOT])
def test_cli_names_output_folder_and_space_and_keeps_windows_when_output_disk_is_full(
    tmp_path, monkeypatch, stage2_weights, preset, code_errno
):
    from av.container import OutputContainer

    cache = tmp_path / "jobs"
    monkeypatch.setenv("VIDREFINE_CACHE", str(cache))

    def mux_full(self, packets):
        raise OSError(code_errno, os.strerror(code_errno))

    outdir = tmp_path / "videos"
    outdir.mkdir()
    clip = make_clip(tmp_path / "in.mp4", frames=20, size_hw=(48, 64))
    monkeypatch.setattr(OutputContainer, "mux", mux_full)  # the output's disk is full
    code, text = upscale(clip.path, outdir / "out.mp4", stage2_weights, preset)

    assert code == ExitCode.ERROR, text
    lines = error_lines(text)
    assert len(lines) == 1, text
    assert "bug" not in text and str(outdir) in lines[0], lines[0]
    assert "MB free" in lines[0], lines[0]
    assert list(outdir.iterdir()) == []  # no output, no temporary file
    assert list(cache.glob("*/window_*.safetensors")), "finished windows must be kept"


def _break(folder: Path, how: str) -> None:
    weights = folder / "model.safetensors"
    if how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        weights.write_bytes(os.urandom(4096))
    else:  # a pickle torch's weights-only loader refuses
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"not a pickle at all " * 64)


@pytest.mark.parametrize("how", ["truncated", "garbage", "bad_pickle"])
def test_cli_exits_bad_checkpoint_naming_t5_folder_when_its_weights_are_damaged(
    tmp_path, stage2_weights, preset, how
):
    weights = tmp_path / "weights"
    weights.mkdir()
    for entry in stage2_weights.iterdir():
        if entry.name == "t5-v1_1-xxl":
            shutil.copytree(entry, weights / entry.name)
        else:
            (weights / entry.name).symlink_to(entry)
    t5 = weights / "t5-v1_1-xxl"
    _break(t5, how)
    clip = make_clip(tmp_path / "in.mp4", frames=9, size_hw=(48, 64))
    code, text = upscale(clip.path, tmp_path / "out.mp4", weights, preset)

    assert code == ExitCode.BAD_CHECKPOINT, text
    lines = error_lines(text)
    assert len(lines) == 1, text
    assert str(t5.resolve()) in lines[0] and "vidrefine download --only t5" in lines[0], lines[0]
    assert "bug" not in text and "weights_only" not in text, text
