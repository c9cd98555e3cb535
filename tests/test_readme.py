"""Every `vidrefine ...` line in the README's shell blocks names a real command and options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from vidrefine.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("vidrefine ")]


COMMANDS = readme_commands()


def test_readme_shows_the_main_upscale_command_when_read():
    assert any(args[:2] == ["upscale", "examples/sample.mp4"] for args in COMMANDS)
    assert (README.parent / "examples" / "sample.mp4").is_file()


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a)[:40] for a in COMMANDS])
def test_readme_command_parses_when_given_to_the_cli(args):
    # "--help" last: click parses every earlier option first, so a misspelt one still fails.
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
