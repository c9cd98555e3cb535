"""`vidrefine doctor` names the one command that fetches every missing weight entry."""

from __future__ import annotations

from click.testing import CliRunner

from vidrefine.cli import cli


def test_doctor_names_the_download_command_for_all_missing_weights_when_some_are_missing(
    tmp_path,
):
    (tmp_path / "3d-vae.pt").write_bytes(b"vae")
    (tmp_path / "stage2.pt").write_bytes(b"dit")
    result = CliRunner().invoke(cli, ["doctor", "--weights", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    fetch = [line for line in lines if "missing weights" in line and "vidrefine download" in line]
    assert len(fetch) == 1, result.stdout  # one command for the models, the captioner apart
    assert fetch[0].endswith(f"vidrefine download --only t5,stage1 --weights {tmp_path}")
    assert "missing weights (~21.3 GB)" in fetch[0]
    captioner = [line for line in lines if "--only captioner" in line]
    assert len(captioner) == 1 and "caption" in captioner[0], result.stdout
