"""Every `vidrefine ...` line in the README's shell blocks names a real command and options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from vidrefine.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


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


def upscale_captions() -> list[tuple[list[str], str]]:
    """(command, caption) of each README `upscale` of an existing clip, the caption as
    `upscale` finds it: --caption/-c, --caption-file, or the clip's sidecar.
    """
    from vidrefine.cli.batch import find_caption

    found = []
    for args in COMMANDS:
        if args[:1] != ["upscale"] or not (ROOT / args[1]).is_file():
            continue
        flags = dict(zip(args, args[1:], strict=False))
        caption = flags.get("--caption", flags.get("-c"))
        caption_file = flags.get("--caption-file")
        if caption == "auto":
            continue
        text, _ = find_caption(ROOT / args[1], caption, caption_file and ROOT / caption_file)
        found.append((args, text))
    return found


def test_readme_upscale_example_caption_is_long_enough_when_checked_as_upscale_does():
    from vidrefine.cli.batch import UpscaleJob, short_caption_warnings

    checked = upscale_captions()
    assert checked, "no README upscale of an existing clip"
    for args, caption in checked:
        job = UpscaleJob(ROOT / args[1], ROOT / "out.mp4", caption, "README")
        assert short_caption_warnings([job]) == [], args


def test_readme_python_example_on_tiny_weights_passes_a_small_size_when_read():
    from tests.test_examples import assert_small, tiny_weight_sizes

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert_small([size for block in blocks for size in tiny_weight_sizes(block)])
