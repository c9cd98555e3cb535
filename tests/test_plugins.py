"""Generator plugins: discovery through entry-point metadata, broken plugins, selection."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from t2v_fixtures import register_plugins, write_toy_plugins

from vidrefine.cli import cli
from vidrefine.errors import BadInput, VidrefineError
from vidrefine.plugins import Generator, create_generator, discover_generators


@pytest.fixture
def toy_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = write_toy_plugins(tmp_path / "site")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in ("vr_toy_plugin", "vr_broken_plugin"):
        sys.modules.pop(name, None)


def test_registered_plugin_is_discovered_when_its_dist_info_is_on_the_path(toy_plugins):
    found = discover_generators()
    assert found["toy"].ok and found["toy"].value == "vr_toy_plugin:make_toy"
    assert found["toy"].package == "vr-test-plugins"


def test_plugin_is_not_discovered_when_its_dist_info_is_not_on_the_path():
    assert "toy" not in discover_generators()


def test_broken_plugin_is_a_warning_at_discovery_when_its_import_fails(toy_plugins):
    warnings: list[str] = []
    found = discover_generators(warn=warnings.append)
    assert not found["broken"].ok
    assert any("broken" in w and "cannot be imported" in w for w in warnings)
    assert found["toy"].ok  # the others still work


def test_selecting_a_broken_plugin_raises_the_captured_error_when_named(toy_plugins):
    with pytest.raises(VidrefineError, match="needs a package that is not installed"):
        create_generator("broken")


def test_plugin_of_another_api_version_is_refused_when_selected(toy_plugins):
    with pytest.raises(VidrefineError, match="API version 999"):
        create_generator("future")


def test_unknown_generator_name_is_bad_input_listing_the_installed_ones(toy_plugins):
    with pytest.raises(BadInput, match="installed: .*toy"):
        create_generator("nope")


@pytest.mark.parametrize("name", ["toy", "toy-class"])
def test_plugin_is_created_as_a_generator_when_registered_as_factory_or_class(toy_plugins, name):
    generator = create_generator(name)
    assert isinstance(generator, Generator)
    assert generator.size_hw == (16, 24)


def test_first_registration_wins_when_a_name_is_registered_twice(toy_plugins, monkeypatch):
    other = register_plugins(
        toy_plugins.parent / "other", {"toy": "vr_toy_plugin:ToyGenerator"}, dist="vr-other"
    )
    monkeypatch.syspath_prepend(str(other))
    warnings: list[str] = []
    found = discover_generators(warn=warnings.append)
    assert any("registered twice" in w for w in warnings)
    assert found["toy"].package in {"vr-test-plugins", "vr-other"}


def test_list_generators_shows_registered_and_broken_plugins_when_asked(toy_plugins):
    result = CliRunner().invoke(cli, ["t2v", "--list-generators"])
    assert result.exit_code == 0, result.output
    assert "toy" in result.stdout and "vr_toy_plugin:make_toy" in result.stdout
    assert "broken" in result.stdout
    assert "warning:" in result.stderr and "cannot be imported" in result.stderr
