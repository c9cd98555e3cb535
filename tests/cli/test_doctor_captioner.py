"""`vidrefine doctor` lists the captioner's weights (the README's table has them), found or
missing, with the command that fetches them apart from what upscale and t2v need.
"""

from __future__ import annotations

from click.testing import CliRunner

from vidrefine.checkpoints.weights import ALL_WEIGHTS, CAPTIONER
from vidrefine.cli import cli


def doctor(folder) -> list[str]:
    result = CliRunner().invoke(cli, ["doctor", "--weights", str(folder)])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def put(folder, *entries) -> None:
    for entry in entries:
        if entry.folder:
            (folder / entry.name).mkdir()
            for source in entry.sources:
                (folder / entry.name / source.local_name).write_bytes(b"x")
        else:
            (folder / entry.name).write_bytes(b"x")


def test_doctor_lists_the_missing_captioner_with_its_own_download_command(tmp_path):
    put(tmp_path, *ALL_WEIGHTS)
    lines = doctor(tmp_path)
    row = [line for line in lines if CAPTIONER.display_name in line]
    assert row and "missing" in row[0] and "caption" in row[0], lines
    fetch = [line for line in lines if "vidrefine download" in line]
    assert len(fetch) == 1, lines
    assert fetch[0].endswith(f"vidrefine download --only captioner --weights {tmp_path}")


def test_doctor_lists_where_the_captioner_is_when_it_is_found(tmp_path):
    put(tmp_path, *ALL_WEIGHTS, CAPTIONER)
    lines = doctor(tmp_path)
    row = [line for line in lines if CAPTIONER.display_name in line]
    assert row and "missing" not in row[0] and "~" not in row[0], lines  # found: its real size
    assert str(tmp_path)[:12] in row[0], row[0]  # its folder (cut short to fit the table)
    assert not [line for line in lines if "vidrefine download" in line], lines
