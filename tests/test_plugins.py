"""Generator plugins: discovery through entry-point metadata, broken plugins, selection."""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from t2v_fixtures import register_plugins, write_toy_plugins

from vidrefine.cli import cli
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput, VidrefineError
from vidrefine.plan.clip import ModelPlacement
from vidrefine.plugins import (
    API_VERSION,
    GENERATOR_ATTRIBUTES,
    GENERATOR_METHODS,
    GeneratedClip,
    Generator,
    check_generator,
    create_generator,
    discover_generators,
)
from vidrefine.progress import NullProgress

PLUGIN_README = Path(__file__).resolve().parents[1] / "generators" / "README.md"


@pytest.fixture
def toy_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = write_toy_plugins(tmp_path / "site", refused=True)
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


def test_version_1_plugin_is_refused_with_the_version_line_when_discovered_or_selected(
    toy_plugins,
):
    found = discover_generators()
    expected = "implements plugin API version 1; this vidrefine supports version 2"
    assert not found["old"].ok and expected in found["old"].error
    assert "\n" not in found["old"].error
    with pytest.raises(VidrefineError, match=expected):
        create_generator("old")


@pytest.mark.parametrize(
    "name,member", [("no-describe", "describe"), ("no-configure", "configure")]
)
def test_plugin_class_missing_a_method_is_refused_naming_it_when_discovered(
    toy_plugins, name, member
):
    warnings: list[str] = []
    found = discover_generators(warn=warnings.append)
    assert found[name].error == f"generator {name!r} lacks {member}"
    assert any(w == found[name].error for w in warnings)
    with pytest.raises(VidrefineError, match=f"lacks {member}$"):
        create_generator(name)


def test_plugin_missing_dit_config_is_refused_naming_it_when_created(toy_plugins):
    # a class may set data attributes in __init__, so the instance is what is checked
    assert discover_generators()["no-dit-config"].ok
    with pytest.raises(VidrefineError, match="lacks dit_config$"):
        create_generator("no-dit-config")


def test_plugin_with_version_1_load_signature_is_refused_naming_placement_when_discovered(
    toy_plugins,
):
    error = discover_generators()["old-load"].error
    assert error is not None and "load() without the keyword(s) placement" in error


def complete_generator(**changes) -> SimpleNamespace:
    """An object with every protocol member (API version 2), `changes` applied."""

    def load(weights_dir, *, device, placement):
        return None

    members = {
        "api_version": API_VERSION,
        "name": "plain",
        "size_hw": (16, 24),
        "num_frames": 9,
        "fps": Fraction(4),
        "required_weights": (),
        "dit_config": None,
        "latent_shape": lambda: (3, 16, 2, 3),
        "configure": lambda config: None,
        "load": load,
        "generate": lambda prompt_embedding, seed, *, progress: None,
        "release": lambda: None,
        "describe": lambda: {},
    }
    return SimpleNamespace(**(members | changes))


def test_complete_version_2_object_passes_the_check_when_it_has_every_member():
    assert API_VERSION == 2
    assert check_generator("plain", complete_generator()) is None
    assert isinstance(complete_generator(), Generator)


@pytest.mark.parametrize("member", [*GENERATOR_ATTRIBUTES[1:], *GENERATOR_METHODS])
def test_object_missing_any_protocol_member_is_refused_naming_it(member):
    generator = complete_generator()
    delattr(generator, member)
    assert check_generator("plain", generator) == f"generator 'plain' lacks {member}"
    assert not isinstance(generator, Generator)


def test_object_without_api_version_is_refused_naming_it():
    generator = complete_generator()
    del generator.api_version
    assert check_generator("plain", generator) == "generator 'plain' lacks api_version"


def test_dit_config_none_is_accepted_but_a_non_callable_method_is_refused_naming_it():
    assert check_generator("plain", complete_generator(dit_config=None)) is None
    problem = check_generator("plain", complete_generator(describe={"steps": 3}))
    assert problem == "generator 'plain' has describe that is not callable"


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


def test_minimal_plugin_in_the_readme_is_a_working_version_2_plugin_when_copied():
    text = PLUGIN_README.read_text()
    source = re.search(r"## A minimal plugin.*?```python\n(.*?)```", text, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(source, "my_plugin.py", "exec"), namespace)
    sweep = namespace["Sweep"]()
    assert check_generator("sweep", namespace["Sweep"]) is None
    assert check_generator("sweep", sweep) is None
    sweep.configure(RunConfig())
    placement = ModelPlacement(dtype="fp32", vae_dtype="fp32", offload="none")
    sweep.load(None, device=torch.device("cpu"), placement=placement)
    clip = sweep.generate(torch.zeros(1, 226, 8), 3, progress=NullProgress())
    assert isinstance(clip, GeneratedClip) and clip.frames.shape == (49, 256, 480, 3)
    json.dumps(sweep.describe())
    sweep.release()
