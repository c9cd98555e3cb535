"""Issue 12, item 7: each wrong message, met through the `vidrefine` command where users meet it."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import av
import pytest
import torch
from click.testing import CliRunner

import tests.media
from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.errors import ExitCode, OutputExists, OutputNotWritable
from vidrefine.io import writer
from vidrefine.io.atomic import atomic_output, check_output

NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems
TINY_PRESET = 'steps = 1\nwindow_latent = 4\nwindow_overlap_latent = 2\nvae_mode = "whole"\n'


def vidrefine(*args: str):
    """Run the command; returns (exit code, stdout and stderr together)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def error_line(text: str) -> str:
    """The one `vidrefine: error:` line of a failed command (asserting there is exactly one)."""
    lines = [line for line in text.splitlines() if line.startswith("vidrefine: error:")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def weights(stage2_weights) -> Path:
    """The shared tiny stage-II weights, with this module's preset beside them."""
    (stage2_weights / "tiny.toml").write_text(TINY_PRESET)
    return stage2_weights


def upscale_tiny(clip: Path, out: Path, weights: Path, *extra: str):
    return vidrefine(
        "upscale", clip, "-c", "a", "-o", out, "--weights", weights, "--offline",
        "--preset", weights / "tiny.toml", "--size", "64p", *extra,
    )  # fmt: skip


# ---- a. --preset given a folder ------------------------------------------------------------


@pytest.mark.parametrize("as_typed", ["path", "bare name"])
def test_preset_folder_is_called_a_folder_not_a_missing_file_when_passed_to_preset(
    tmp_path, monkeypatch, as_typed
):
    folder = tmp_path / "my-presets"
    folder.mkdir()
    (folder / "calm.toml").write_text("steps = 3\n")
    monkeypatch.chdir(tmp_path)
    given = str(folder) if as_typed == "path" else "my-presets"
    code, text = vidrefine("upscale", "clip.mp4", "--preset", given, "--show-config")
    assert code == ExitCode.BAD_INPUT
    line = error_line(text)
    assert "is a folder" in line and "not a preset file" in line
    assert "does not exist" not in line and "unknown preset" not in line
    assert "calm.toml" in line  # points at a preset file inside it


# ---- b. an output name longer than the file system allows ---------------------------------


def test_over_long_output_name_is_called_too_long_not_an_unwritable_folder_when_checked(tmp_path):
    out = tmp_path / ("o" * 300 + ".mp4")
    with pytest.raises(OutputNotWritable) as caught:
        check_output(None, out, overwrite=False)
    message = str(caught.value)
    assert "too long" in message and str(NAME_MAX) in message and "cannot write in" not in message
    assert len(message) < len(str(tmp_path)) + 150  # the name is shortened, not quoted whole


def test_over_long_output_name_is_called_too_long_when_derived_from_the_input(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=3)
    long_input = tmp_path / ("a" * (NAME_MAX - 4) + ".mp4")  # a legal name...
    clip.path.rename(long_input)  # ...whose output, name_1080p.mp4, is beyond NAME_MAX
    code, text = vidrefine("upscale", long_input, "-c", "a", "--offline")
    assert code == ExitCode.BAD_INPUT
    line = error_line(text)
    assert "too long" in line and str(NAME_MAX) in line
    assert "cannot write in" not in line and "unexpected" not in line


def test_long_output_name_that_fits_passes_the_output_checks_when_temp_names_would_not(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=3)
    long_input = tmp_path / ("a" * (NAME_MAX - 20) + ".mp4")
    clip.path.rename(long_input)  # output name: 243 bytes, a legal name; its temp name was not
    code, text = vidrefine("upscale", long_input, "-c", "a", "--offline", "--size", "64p")
    assert code == ExitCode.MISSING_WEIGHTS, text  # every output check passed
    assert "cannot write" not in text


def test_atomic_output_publishes_a_file_when_its_name_is_near_the_limit(tmp_path):
    final = tmp_path / ("b" * (NAME_MAX - 4) + ".mp4")
    with atomic_output(final, overwrite=False) as temp:
        assert len(temp.name) <= NAME_MAX and temp.suffix == ".mp4"
        temp.write_bytes(b"done")
    assert final.read_bytes() == b"done"


def test_over_long_output_name_is_called_too_long_when_given_with_o(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=3)
    out = tmp_path / ("o" * 300 + ".mp4")
    code, text = vidrefine("upscale", clip.path, "-c", "a", "-o", out, "--offline")
    assert code == ExitCode.BAD_INPUT and "too long" in error_line(text)


# ---- c. a faststart MP4 cut short ----------------------------------------------------------


def faststart_clip(path: Path, monkeypatch, **kwargs) -> tests.media.Clip:
    """make_clip with the MP4 index written at the front (movflags +faststart)."""
    plain_open = av.open

    def open_faststart(file, mode="r", **options):
        if mode == "w":
            options.setdefault("options", {})["movflags"] = "+faststart"
        return plain_open(file, mode=mode, **options)

    with monkeypatch.context() as patch:
        patch.setattr(tests.media.av, "open", open_faststart)
        clip = make_clip(path, **kwargs)
    data = clip.path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "the index must come first"
    return clip


def cut_in_half(path: Path, dest: Path) -> Path:
    data = path.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def decodable_frames(path: Path) -> int:
    """How many frames FFmpeg decodes from `path`, skipping packets it cannot."""
    count = 0
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            with contextlib.suppress(av.FFmpegError):
                count += len(packet.decode())
    return count


def test_faststart_mp4_cut_before_any_frame_is_one_plain_line_when_inspected(tmp_path, monkeypatch):
    clip = faststart_clip(tmp_path / "whole.mp4", monkeypatch, frames=40, size_hw=(64, 96))
    cut = cut_in_half(clip.path, tmp_path / "cut.mp4")  # ends inside the first frame's data
    for command in (["info", cut], ["upscale", cut, "-c", "a", "--offline"]):
        code, text = vidrefine(*command)
        assert code == ExitCode.BAD_INPUT
        line = error_line(text)
        assert f"{cut}: is cut short: 0 of 40 frames could be read" in line
        for jargon in ("avcodec", "Errno", "()", "Invalid data"):
            assert jargon not in line


def test_faststart_mp4_cut_in_half_is_refined_as_far_as_it_goes_when_upscaled(
    tmp_path, monkeypatch, weights
):
    clip = faststart_clip(tmp_path / "whole.mp4", monkeypatch, frames=80, size_hw=(64, 96))
    cut = cut_in_half(clip.path, tmp_path / "cut.mp4")
    held = decodable_frames(cut)
    assert 0 < held < 80
    code, text = vidrefine("info", "--json", cut)
    assert code == 0, text
    info = json.loads(text)
    assert info["nb_frames"] == str(held) and info["frame_count_declared"] == 80
    out = tmp_path / "out.mp4"
    code, text = upscale_tiny(cut, out, weights)
    assert code == 0, text
    assert "could not be read" in text and f"{held} frame(s) were decoded" in text
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == held
    assert "frame count was off" not in text  # the probe counted what the file holds


# ---- d. the output appears while it is being written ---------------------------------------


@pytest.fixture
def rival_writes_the_output(monkeypatch):
    """Another process creates the output while vidrefine writes its temporary file."""
    plain = writer.atomic_output

    @contextlib.contextmanager
    def racing(final, *, overwrite):
        with plain(final, overwrite=overwrite) as temp:
            Path(final).write_bytes(b"theirs")
            yield temp

    monkeypatch.setattr(writer, "atomic_output", racing)


def test_output_appearing_during_the_write_exits_4_when_upscaling(
    tmp_path, weights, rival_writes_the_output
):
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    out = tmp_path / "o.mp4"
    code, text = upscale_tiny(clip.path, out, weights)
    assert out.read_bytes() == b"theirs"
    assert code == ExitCode.OUTPUT_EXISTS, text


def test_folder_appearing_at_the_output_is_output_exists_when_overwriting(tmp_path):
    final = tmp_path / "o.mp4"
    with pytest.raises(OutputExists, match="folder"), atomic_output(final, overwrite=True) as t:
        t.write_bytes(b"mine")
        final.mkdir()
    assert final.is_dir() and [p.name for p in tmp_path.iterdir()] == ["o.mp4"]


def test_dangling_link_at_the_output_is_called_existing_not_appeared_when_refused(tmp_path):
    final = tmp_path / "o.mp4"
    final.symlink_to(tmp_path / "nowhere.mp4")
    with pytest.raises(OutputExists, match="already exists"), atomic_output(final, overwrite=False):
        pass


# ---- e. an empty (zero-byte) weight file ---------------------------------------------------


def test_empty_stage2_is_called_empty_with_the_refetch_command_not_missing_when_offline(tmp_path):
    folder = tmp_path / "w"
    (folder / "t5-v1_1-xxl").mkdir(parents=True)
    for name in ("config.json", "spiece.model", "model.safetensors"):
        (folder / "t5-v1_1-xxl" / name).write_bytes(b"x")
    (folder / "3d-vae.pt").write_bytes(b"x")
    (folder / "stage2.pt").write_bytes(b"")  # what an interrupted copy leaves
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    code, text = vidrefine("upscale", clip.path, "-c", "a", "--weights", folder, "--offline")
    assert code == ExitCode.BAD_CHECKPOINT
    line = error_line(text)
    assert f"{folder / 'stage2.pt'} is empty" in line and "missing" not in line
    assert f"vidrefine download --only stage2 --weights {folder}" in line


def test_empty_checkpoint_is_called_empty_with_the_refetch_command_when_converted(tmp_path):
    (tmp_path / "stage2.pt").write_bytes(b"")
    code, text = vidrefine("convert", tmp_path / "stage2.pt", tmp_path / "s2.safetensors")
    assert code == ExitCode.BAD_CHECKPOINT
    line = error_line(text)
    assert "stage2.pt is empty" in line and "vidrefine download --only stage2" in line


# ---- f. a pickle that is not plain tensors -------------------------------------------------


def test_pickle_with_python_objects_never_suggests_weights_only_false_when_read(tmp_path):
    path = tmp_path / "stage2.pt"
    tensors = {"model.diffusion_model.x": torch.zeros(2)}
    torch.save({"module": tensors, "args": argparse.Namespace(lr=1e-4)}, path)
    code, text = vidrefine("convert", path, tmp_path / "s2.safetensors")
    assert code == ExitCode.BAD_CHECKPOINT
    line = error_line(text)
    assert "weights_only" not in text and "re-run" not in text.lower()
    assert f"{path} is not a checkpoint vidrefine can read" in line
    assert len(line) < 400


def test_pickle_error_in_a_weight_file_is_one_line_exit_5_when_upscaling(tmp_path, weights):
    folder = tmp_path / "w"
    folder.mkdir()
    for name in ("3d-vae.pt", "t5-v1_1-xxl", "tiny.toml"):
        (folder / name).symlink_to(weights / name)
    torch.save({"module": {}, "args": argparse.Namespace(lr=1e-4)}, folder / "stage2.pt")
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    code, text = upscale_tiny(clip.path, tmp_path / "o.mp4", folder)
    assert code == ExitCode.BAD_CHECKPOINT, text
    assert "weights_only" not in text and "not a checkpoint vidrefine can read" in text
    assert not (tmp_path / "o.mp4").exists()
