"""`vidrefine serve` refuses a start it cannot keep, in one line, before it creates a folder,
changes a mode, announces "serving on" or looks for weights.
"""

from __future__ import annotations

import socket
import stat

import pytest
from tiny_runs import run_cli

from vidrefine.errors import ExitCode


def start_args(tmp_path, *extra: str) -> list[str]:
    """`serve` with a work and an output folder under `tmp_path` (weights that are not there)."""
    work, out = tmp_path / "work", tmp_path / "out"
    return ["serve", "--work", str(work), "-o", str(out), "--weights", str(tmp_path), *extra]


def assert_refused_before_anything(code: int, text: str, tmp_path, *words: str) -> None:
    assert code == ExitCode.BAD_INPUT, text
    lines = sorted(set(text.strip().splitlines()))  # CliRunner may repeat stderr in output
    assert len(lines) == 1 and lines[0].startswith("vidrefine: error: "), text
    assert all(word in lines[0] for word in words), text
    assert "serving on" not in text and "bug" not in text and "stage2.pt" not in text
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_serve_refuses_a_port_outside_1_to_65535_in_one_line_when_started(tmp_path, port):
    code, text = run_cli(start_args(tmp_path, "--port", port, "--offline"))
    assert_refused_before_anything(code, text, tmp_path, "--port", port, "1 to 65535")


@pytest.mark.parametrize("cap", ["inf", "nan", "-1", "0"])
def test_serve_refuses_an_upload_cap_that_is_not_a_positive_number_when_started(tmp_path, cap):
    code, text = run_cli(start_args(tmp_path, "--max-upload-gb", cap, "--offline"))
    assert_refused_before_anything(code, text, tmp_path, "--max-upload-gb must be", cap)


def test_serve_refuses_a_port_in_use_and_leaves_an_existing_work_folder_as_it_was(
    tmp_path, stage2_weights
):
    work = tmp_path / "work"
    work.mkdir(mode=0o755)
    work.chmod(0o755)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", "--port", str(port), "--weights", str(stage2_weights)]
        code, text = run_cli([*args, "--work", str(work), "-o", str(tmp_path / "out")])
    assert code == ExitCode.BAD_INPUT, text
    assert set(text.strip().splitlines()) == {
        f"vidrefine: error: port {port} on 127.0.0.1 is in use (another server listens there); "
        "give another --port"
    }
    assert stat.S_IMODE(work.stat().st_mode) == 0o755
    assert list(work.iterdir()) == [] and not (tmp_path / "out").exists()
