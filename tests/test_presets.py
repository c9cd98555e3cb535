"""Presets: merge order, loud errors, the faithful numbers, and shipping with the package."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vidrefine.cli import cli
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput
from vidrefine.plan.geometry import parse_size
from vidrefine.presets import (
    available_presets,
    describe,
    load_config,
    preset_path,
    read_preset,
    to_toml,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_preset_loads_when_read_by_name():
    names = set(available_presets())
    assert {"default", "faithful", "fast", "low-vram"} <= names
    for name in names:
        assert isinstance(load_config(name), RunConfig)
        assert describe(preset_path(name)), f"{name} has no leading description comment"


def test_default_preset_is_the_dataclass_defaults_when_loaded():
    assert load_config("default") == RunConfig()
    assert load_config(None) == RunConfig()


def test_flags_beat_preset_and_preset_beats_defaults_when_merged(tmp_path):
    preset = write(tmp_path, "steps = 7\ncrf = 20\n")
    config = load_config(str(preset), {"steps": 9, "seed": None})
    assert config.steps == 9  # flag over preset
    assert config.crf == 20  # preset over default
    assert config.shift == RunConfig().shift  # untouched default
    assert config.seed == RunConfig().seed  # None means "flag not given"


def test_unknown_key_names_the_key_and_the_file_when_a_preset_has_a_typo(tmp_path):
    preset = write(tmp_path, "stepz = 4\n")
    with pytest.raises(BadInput) as err:
        load_config(str(preset))
    assert "stepz" in str(err.value) and str(preset) in str(err.value)


def test_unknown_flag_key_is_named_when_an_override_does_not_exist():
    with pytest.raises(BadInput, match="nope"):
        load_config(None, {"nope": 1})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('steps = "4"', "steps"),
        ("audio = 1", "audio"),
        ("crf = true", "crf"),
        ("strength = 800", "strength"),
        ('codec = "vp9"', "codec"),
        ('size = "huge"', "size"),
        ("window_latent = 4\nwindow_overlap_latent = 4", "window_overlap_latent"),
    ],
)
def test_bad_value_names_key_and_file_when_type_or_range_is_wrong(tmp_path, text, key):
    preset = write(tmp_path, text + "\n")
    with pytest.raises(BadInput) as err:
        read_preset(preset)
    message = str(err.value)
    assert str(preset) in message
    assert key in message or (key == "size" and "--size" in message)


def test_broken_toml_is_bad_input_naming_the_file_when_it_does_not_parse(tmp_path):
    preset = write(tmp_path, "steps = = 4\n")
    with pytest.raises(BadInput, match="not valid TOML"):
        read_preset(preset)


def test_unknown_preset_name_lists_the_shipped_ones_when_misspelled():
    with pytest.raises(BadInput) as err:
        preset_path("faithfull")
    assert "faithful" in str(err.value) and "low-vram" in str(err.value)


def test_integer_for_a_float_key_is_stored_as_float_when_loaded(tmp_path):
    config = load_config(str(write(tmp_path, "shift = 3\n")))
    assert config.shift == 3.0 and isinstance(config.shift, float)


def test_faithful_preset_sets_the_original_scripts_numbers_when_loaded():
    config = load_config("faithful")
    # flashvideo-spec §5.3-5.6, §9.2, §10: the original's stage-II settings.
    assert config.steps == 5
    assert config.shift == 2.5
    assert config.cfg_scale == 13.0
    assert config.strength == 675
    assert config.timestep_rounding == "bf16"
    assert config.caption_prefix == "medium motion,"
    assert config.aspect == "stretch"
    assert parse_size(config.size).exact_hw == (1072, 1920)
    assert config.fps_mode == "fixed8"
    assert config.vae_mode == "faithful"
    assert config.audio is False
    assert config.crf == 5
    assert config.codec == "h264" and config.pix_fmt == "yuv420p"
    assert config.window_latent == 13
    assert config.stage1_guidance == "faithful" and config.stage1_cfg_scale == 8.0


def test_faithful_preset_cites_a_spec_section_on_every_setting_when_read():
    for line in (ROOT / "presets" / "faithful.toml").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "spec §" in line, line


def test_low_vram_and_fast_presets_change_what_they_promise_when_loaded():
    low = load_config("low-vram")
    assert low.offload == "layer" and low.vram_gb == 16.0
    assert 0 < low.vae_tile_latent < 64
    fast = load_config("fast")
    assert fast.steps < RunConfig().steps
    assert fast.window_overlap_latent < RunConfig().window_overlap_latent


@pytest.mark.parametrize("name", ["default", "faithful", "fast", "low-vram"])
def test_to_toml_round_trips_when_written_and_read_back(tmp_path, name):
    config = load_config(name)
    path = write(tmp_path, to_toml(config, header="round trip"))
    assert load_config(str(path)) == config


def test_show_config_prints_the_merged_settings_as_a_loadable_preset_when_asked(tmp_path):
    result = CliRunner().invoke(
        cli, ["upscale", "--preset", "faithful", "--steps", "6", "--no-audio", "--show-config"]
    )
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    expected = dataclasses.replace(load_config("faithful"), steps=6)
    assert load_config(str(write(tmp_path, result.stdout))) == expected
    assert shown["steps"] == 6


def test_ten_bit_flag_sets_the_ten_bit_pixel_format_when_given():
    result = CliRunner().invoke(cli, ["upscale", "--ten-bit", "--show-config"])
    assert tomllib.loads(result.stdout)["pix_fmt"] == "yuv420p10le"


def test_presets_ship_inside_the_package_when_built_as_a_wheel():
    link = ROOT / "vidrefine" / "preset_files"
    assert link.resolve() == (ROOT / "presets").resolve()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "preset_files/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["vidrefine"]


def test_presets_command_lists_each_preset_with_its_changes_when_run():
    result = CliRunner().invoke(cli, ["presets"])
    assert result.exit_code == 0
    for name in ("default", "faithful", "fast", "low-vram"):
        assert name in result.stdout
    assert "offload='layer'" in result.stdout


def test_merged_window_overlap_must_stay_below_the_window_when_a_preset_shrinks_it(tmp_path):
    import pytest

    from vidrefine.errors import BadInput
    from vidrefine.presets import load_config

    path = tmp_path / "p.toml"
    path.write_text("window_latent = 4\n")  # the default overlap is 4
    with pytest.raises(BadInput, match="window_overlap_latent"):
        load_config(str(path))


AWKWARD_STRINGS = [
    "medium motion,\nand a second line",
    'a "quoted" word',
    "a back\\slash and a trailing one\\",
    "tab\there, carriage return\r\nand bell \x07, escape \x1b, delete \x7f, NUL \x00",
    "'''triple single''' and \"\"\"triple double\"\"\"",
    "clapper \U0001f3ac, line separator \u2028, BOM \ufeff",
]


def toml_escaped(text: str) -> str:
    """A TOML basic string of `text` with every character but letters and spaces as \\U escape."""
    body = "".join(c if c.isalnum() or c == " " else f"\\U{ord(c):08x}" for c in text)
    return f'"{body}"'


@pytest.mark.parametrize("prefix", AWKWARD_STRINGS)
def test_show_config_round_trips_strings_with_newlines_quotes_and_controls_when_saved(
    tmp_path, prefix
):
    mine = write(tmp_path, f"caption_prefix = {toml_escaped(prefix)}\n")
    assert load_config(str(mine)).caption_prefix == prefix
    result = CliRunner().invoke(cli, ["upscale", "--preset", str(mine), "--show-config"])
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["caption_prefix"] == prefix
    assert load_config(str(write(tmp_path, result.stdout, "shown.toml"))) == load_config(str(mine))


def test_show_config_header_stays_a_comment_when_the_preset_path_holds_control_characters(tmp_path):
    folder = tmp_path / "odd\nname\x01"
    folder.mkdir()
    mine = write(folder, "steps = 3\n")
    result = CliRunner().invoke(cli, ["upscale", "--preset", str(mine), "--show-config"])
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["steps"] == 3
