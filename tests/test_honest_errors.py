"""Issue 20, "honest errors": user mistakes met through the `vidrefine` command, each one line
with its exit code, never "this is a bug" and never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from vae_fixtures import write_official_vae

from tests.media import make_clip
from vidrefine.captions import parse_srt
from vidrefine.cli import cli
from vidrefine.errors import BadInput, ExitCode

ROOT = Path(__file__).resolve().parents[1]


def vidrefine(*args: object) -> tuple[int, str]:
    """Run the command; returns (exit code, stdout and stderr together)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def error_line(text: str) -> str:
    """The one `vidrefine: error:` line of a failed command, checked to be no bug report."""
    lines = [line for line in text.splitlines() if line.startswith("vidrefine: error:")]
    assert len(lines) == 1, text
    assert "bug" not in lines[0] and "Traceback" not in text, text
    return lines[0]


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "3d-vae.pt"
    write_official_vae(path, seed=3)
    return path


# ---- convert into a place that cannot be written -------------------------------------------


def test_convert_into_a_file_used_as_a_folder_is_one_line_when_the_parent_is_a_file(
    vae_file, tmp_path
):
    parent = tmp_path / "notes.txt"
    parent.write_text("mine\n")
    code, text = vidrefine("convert", vae_file, parent / "vae.safetensors")
    assert code == ExitCode.BAD_INPUT
    assert "not a folder" in error_line(text)
    assert parent.read_text() == "mine\n"


def test_convert_into_a_missing_folder_is_one_line_and_creates_nothing_when_run(vae_file, tmp_path):
    code, text = vidrefine("convert", vae_file, tmp_path / "no" / "vae.safetensors")
    assert code == ExitCode.BAD_INPUT
    assert "does not exist" in error_line(text)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="permission bits do not stop root (the tests here run as root) from writing",
)
def test_convert_into_a_read_only_folder_is_one_line_when_run(vae_file, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, text = vidrefine("convert", vae_file, folder / "vae.safetensors")
        assert code == ExitCode.BAD_INPUT
        assert "cannot write" in error_line(text)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_converted_file_gets_ordinary_permissions_and_no_temporary_is_left_when_written(
    vae_file, tmp_path
):
    out = tmp_path / "vae.safetensors"
    code, text = vidrefine("convert", vae_file, out)
    assert code == 0, text
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["vae.safetensors"]


# ---- t2v seeds outside what a seed can be ---------------------------------------------------


@pytest.mark.parametrize(
    ("seeds", "phrase"),
    [
        ("9223372036854775808", "between 0 and 9223372036854775807"),  # 2**63
        ("1,99999999999999999999999", "between 0 and 9223372036854775807"),
        ("-1", "not a seed"),
        ("0,-5", "not a seed"),
        ("\u00b2", "not a seed"),  # a superscript two: str.isdigit() says yes, int() says no
        ("\u0663", "not a seed"),  # an Arabic-Indic three: int() takes it, a file name would not
        ("0,,1", "not a seed"),
    ],
)
def test_t2v_seed_outside_0_to_2_63_is_one_line_before_any_work_when_given(tmp_path, seeds, phrase):
    out = tmp_path / "out"
    code, text = vidrefine("t2v", "--prompt", "a b", f"--seeds={seeds}", "-o", out)
    assert code == ExitCode.BAD_INPUT
    assert phrase in error_line(text)
    assert not out.exists()


# ---- caption, captions and prompt files: bounded reads, text only ---------------------------

# Runs the command with its address space capped at 3 GB: an unbounded read of /dev/zero ends in
# MemoryError (a bug line) instead of taking the machine's memory.
CAPPED_RUN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))
from vidrefine.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return make_clip(folder / "c.mp4", frames=3, size_hw=(32, 48), fps=Fraction(1)).path


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize(
    "flags",
    [
        ["upscale", "{clip}", "--captions", "/dev/zero", "-o", "{out}.mp4"],
        ["upscale", "{clip}", "--caption-file", "/dev/zero", "-o", "{out}.mp4"],
        ["t2v", "--prompt-file", "/dev/zero", "-o", "{out}"],
    ],
    ids=["captions", "caption-file", "prompt-file"],
)
def test_endless_text_file_is_refused_at_its_size_limit_when_read(clip, tmp_path, flags):
    args = [arg.format(clip=clip, out=tmp_path / "out") for arg in flags]
    done = subprocess.run(
        [sys.executable, "-c", CAPPED_RUN, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    line = error_line(done.stderr)
    assert "/dev/zero" in line and "MiB" in line and "does not exist" not in line


@pytest.mark.parametrize("flag", ["--caption-file", "--captions"])
def test_binary_caption_file_is_called_not_text_when_given(clip, tmp_path, flag):
    blob = tmp_path / "picture.png"
    blob.write_bytes(b"\x00\x01\x02PNG\x00 some bytes\x00" * 20)  # valid UTF-8, NUL bytes
    code, text = vidrefine("upscale", clip, flag, blob, "-o", tmp_path / "o.mp4", "--offline")
    assert code == ExitCode.BAD_INPUT
    line = error_line(text)
    assert str(blob) in line and "not text" in line


def test_binary_prompt_file_is_called_not_text_when_given(tmp_path):
    blob = tmp_path / "prompts.txt"
    blob.write_bytes(bytes(range(256)) * 4)  # not UTF-8
    code, text = vidrefine("t2v", "--prompt-file", blob, "-o", tmp_path / "o")
    assert code == ExitCode.BAD_INPUT
    line = error_line(text)
    assert "not text" in line and "codec" not in line


MERGED_CUES = (
    "1\n00:00:00,000 --> 00:00:01,000\nA red kite over a field.\n"
    "2\n00:00:01,000 --> 00:00:02,000\nA grey heron in the reeds.\n"
)


def test_timing_line_inside_a_cue_is_an_error_naming_its_line_when_the_blank_line_is_missing():
    with pytest.raises(BadInput) as caught:
        parse_srt(MERGED_CUES, "x.captions.srt")
    message = str(caught.value)
    assert message.startswith("x.captions.srt: line 5:") and "blank line" in message


def test_timing_line_after_a_caption_line_is_refused_when_upscale_reads_the_file(clip, tmp_path):
    srt = tmp_path / "c.captions.srt"
    srt.write_text(MERGED_CUES.replace("\n2\n", "\n"))  # no index line either
    code, text = vidrefine("upscale", clip, "--captions", srt, "-o", tmp_path / "o.mp4")
    assert code == ExitCode.BAD_INPUT
    assert "line 4" in error_line(text)
