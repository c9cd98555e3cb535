"""Issue 20, "honest errors": user mistakes met through the `vidrefine` command, each one line
with its exit code, never "this is a bug" and never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from vae_fixtures import write_official_vae

from vidrefine.cli import cli
from vidrefine.errors import ExitCode


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
def test_t2v_seed_outside_0_to_2_63_is_one_line_before_any_work_when_given(
    tmp_path, seeds, phrase
):
    out = tmp_path / "out"
    code, text = vidrefine("t2v", "--prompt", "a b", f"--seeds={seeds}", "-o", out)
    assert code == ExitCode.BAD_INPUT
    assert phrase in error_line(text)
    assert not out.exists()
