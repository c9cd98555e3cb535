"""Usage mistakes and warnings through the real `vidrefine` group: each is one line on stderr."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from dit_fixtures import official_dit_tensors, write_official
from t5_fixtures import TINY_T5_WIDTH, make_tiny_t5, tiny_caption
from vae_fixtures import write_official_vae

from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.cli.environment import Environment
from vidrefine.errors import ExitCode

# Small windows keep the tiny models fast on two CPU cores (as tests/e2e/test_upscale_e2e.py).
TINY_PRESET = """
steps = 2
window_latent = 4
window_overlap_latent = 2
vae_mode = "whole"
"""


def run(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), **kwargs)


def test_misspelled_command_is_one_line_with_a_suggestion_when_close_to_a_command():
    result = run("upscal", "clip.mp4")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == "vidrefine: error: no such command 'upscal'; did you mean 'upscale'?\n"


def test_misspelled_option_is_one_line_with_a_suggestion_when_close_to_an_option():
    result = run("upscale", "clip.mp4", "--stpes", "3")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == (
        "vidrefine: error: upscale: no such option '--stpes'; did you mean '--steps'?\n"
    )


def test_misspelled_group_option_is_one_line_with_a_suggestion_when_close_to_one():
    result = run("--tracebak", "info", "clip.mp4")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == (
        "vidrefine: error: no such option '--tracebak'; did you mean '--traceback'?\n"
    )


def test_file_given_as_weights_is_one_line_when_a_folder_is_expected(tmp_path):
    weights = tmp_path / "stage2.pt"
    weights.write_bytes(b"not a folder")
    result = run("upscale", "clip.mp4", "--weights", str(weights))
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vidrefine: error: upscale: invalid value for '--weights': ")
    assert str(weights) in lines[0] and "is a file" in lines[0]
    assert "Usage:" not in result.output


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("info",), "info: missing argument 'FILE'"),
        (("upscale", "clip.mp4", "--steps"), "upscale: option '--steps' requires an argument"),
        (("upscale", "clip.mp4", "--codec", "vp9"), "upscale: invalid value for '--codec'"),
        (("info", "a.mp4", "b.mp4"), "info: got unexpected extra argument (b.mp4)"),
    ],
)
def test_usage_mistake_is_one_line_naming_command_and_help_when_no_name_is_close(args, what):
    result = run(*args)
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"vidrefine: error: {what}")
    assert lines[0].endswith(f"(see 'vidrefine {args[0]} --help')")


def test_usage_error_goes_to_the_injected_stderr_when_an_environment_is_given():
    out, err = io.StringIO(), io.StringIO()
    result = run("presets", "--json", obj=Environment(out, err))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert err.getvalue() == (
        "vidrefine: error: presets: no such option '--json' (see 'vidrefine presets --help')\n"
    )
    assert result.stderr == ""


@pytest.fixture
def tiny_weights(tmp_path) -> tuple[Path, Path]:
    """Tiny random weights in the official formats and a preset that keeps them fast."""
    folder = tmp_path / "weights"
    folder.mkdir()
    write_official_vae(folder / "3d-vae.pt", seed=1, widths=(32, 32, 32, 32))
    write_official(folder / "stage2.pt", official_dit_tensors(text_dim=TINY_T5_WIDTH, seed=2))
    make_tiny_t5(folder / "t5-v1_1-xxl")
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY_PRESET)
    return folder, preset


def test_truncated_input_warning_is_one_warning_line_when_upscale_decodes_a_cut_clip(
    tmp_path, tiny_weights
):
    weights, preset = tiny_weights
    whole = make_clip(tmp_path / "whole.mkv", frames=40, size_hw=(64, 96))
    cut = tmp_path / "cut.mkv"
    data = whole.path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    args = ["upscale", str(cut), "-c", tiny_caption(20), "-o", str(tmp_path / "out.mp4")]
    result = run(*args, "--weights", str(weights), "--preset", str(preset), "--size", "64p")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "could not be read" in line]
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith(f"vidrefine: warning: {cut}: ")
    assert "(file damaged or cut short)" in warned[0]
    assert "TruncatedInputWarning" not in result.stderr and "reader.py" not in result.stderr
