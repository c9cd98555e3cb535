"""The command group: listing, exit codes, one-line errors, --traceback, injected environment."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vidrefine.cli import COMMAND_MODULES, cli
from vidrefine.cli.display import LineProgress, RichProgress
from vidrefine.cli.environment import Environment
from vidrefine.errors import ExitCode

CLI_DIR = Path(__file__).resolve().parents[1] / "vidrefine" / "cli"
MINE = ("upscale", "t2v", "doctor", "download", "presets")


def run(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), **kwargs)


@pytest.fixture
def extra_command() -> Iterator[callable]:
    """Register throw-away commands on the real group and remove them afterwards."""
    added: list[str] = []

    def add(name: str, exc: BaseException) -> None:
        @click.command(name=name)
        def raiser() -> None:
            raise exc

        cli.add_command(raiser)
        added.append(name)

    yield add
    for name in added:
        cli.commands.pop(name, None)


def test_help_lists_every_command_whose_module_exists_when_asked_for_help():
    result = run("--help")
    assert result.exit_code == 0
    listed = {
        line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()
    }
    present = {name for name in COMMAND_MODULES if (CLI_DIR / f"{name}.py").is_file()}
    assert set(MINE) <= listed
    assert listed == present


def test_module_entry_point_prints_help_when_run_as_python_dash_m():
    done = subprocess.run(
        [sys.executable, "-m", "vidrefine", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "upscale" in done.stdout


def test_vidrefine_error_is_one_stderr_line_with_its_exit_code_when_input_is_missing(tmp_path):
    missing = tmp_path / "nope.mp4"
    result = run("upscale", str(missing), "--caption", "x")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == f"vidrefine: error: {missing} does not exist\n"
    assert "Traceback" not in result.output


def test_missing_weights_exit_with_their_own_code_when_offline(tmp_path):
    result = run("download", "--offline", "--weights", str(tmp_path), "--only", "vae")
    assert result.exit_code == ExitCode.MISSING_WEIGHTS
    assert result.stderr.count("\n") == 1
    assert "3d-vae.pt" in result.stderr


def test_traceback_flag_shows_the_stack_before_the_error_line(tmp_path):
    result = run("--traceback", "upscale", str(tmp_path / "nope.mp4"), "--caption", "x")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("vidrefine: error: ")


def test_unexpected_exception_says_it_is_a_bug_when_not_a_vidrefine_error(extra_command):
    extra_command("explode", ZeroDivisionError("division by zero"))
    result = run("explode")
    assert result.exit_code == ExitCode.ERROR
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "ZeroDivisionError: division by zero" in lines[0]
    assert "bug" in lines[0] and "--traceback" in lines[0]


def test_unexpected_exception_shows_the_stack_when_traceback_is_given(extra_command):
    extra_command("explode", RuntimeError("boom"))
    result = run("--traceback", "explode")
    assert result.exit_code == ExitCode.ERROR
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom" in result.stderr


def test_keyboard_interrupt_exits_130_with_one_line_when_pressed(extra_command):
    extra_command("hang", KeyboardInterrupt())
    result = run("hang")
    assert result.exit_code == 130
    assert result.stderr == "vidrefine: error: interrupted\n"


def test_usage_errors_stay_clicks_when_an_option_is_unknown():
    result = run("upscale", "--frobnicate")
    assert result.exit_code == 2
    assert result.stderr == (
        "vidrefine: error: upscale: no such option '--frobnicate' "
        "(see 'vidrefine upscale --help')\n"
    )


def test_commands_print_through_the_injected_environment_when_one_is_given():
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err)
    result = run("presets", obj=env)
    assert result.exit_code == 0
    assert result.output == ""
    assert "faithful" in out.getvalue()


def test_errors_go_to_the_injected_stderr_when_an_environment_is_given(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    result = run("upscale", str(tmp_path / "x.mp4"), "--caption", "c", obj=Environment(out, err))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert err.getvalue().startswith("vidrefine: error: ")
    assert result.stderr == ""


def test_line_progress_reports_count_and_unit_when_a_task_ends():
    err = io.StringIO()
    progress = LineProgress(Environment(io.StringIO(), err))
    with progress.task("decode", total=None, unit="frames") as task:
        task.set_total(5)
        task.advance(2)
        task.advance()
    progress.warn("short caption")
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("vidrefine: decode: 3 frames in ")
    assert lines[1] == "vidrefine: warning: short caption"


def test_rich_progress_prints_notes_and_closes_cleanly_when_tasks_nest():
    err = io.StringIO()
    progress = RichProgress(Environment(io.StringIO(), err))
    with progress.task("windows", total=2, unit="windows") as outer:
        with progress.task("steps", total=4, unit="steps") as inner:
            inner.advance(4)
        outer.advance()
        progress.info("reused window 1")
    assert "reused window 1" in err.getvalue()


def test_doctor_names_every_weight_entry_when_none_are_present(tmp_path):
    result = run("doctor", "--weights", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in ("3d-vae.pt", "stage2.pt", "stage1.pt", "t5-v1_1-xxl/"):
        assert name in result.stdout
    assert str(tmp_path) in result.stdout


def test_doctor_selftest_refines_a_generated_clip_when_asked():
    from click.testing import CliRunner

    from vidrefine.cli import cli

    result = CliRunner().invoke(cli, ["doctor", "--selftest"])
    assert result.exit_code == 0, result.output
    assert "selftest passed: 20 frames in, 20 out at 96x64, 1 audio stream(s) kept" in result.output


def test_import_stays_light_and_lazy_names_resolve_when_used():
    import subprocess
    import sys

    code = (
        "import sys, vidrefine; heavy = {'torch', 'av', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy; [getattr(vidrefine, n) for n in vidrefine.__all__]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
