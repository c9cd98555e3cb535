"""`vidrefine info FILE --plan` says what it planned for: the GPU found, --vram, or no GPU."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

import vidrefine.pipeline.devices
from tests.media import make_clip
from vidrefine.cli import cli
from vidrefine.errors import DoesNotFit
from vidrefine.io.probe import probe
from vidrefine.plan.clip import SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.presets import available_presets, load_config

NO_GPU = DeviceFacts("cpu", "cpu", None, 32.0)
CARD_ROW = re.compile(r"smallest card, (\S+)\s*│\s*(\d+) GB \(GPU peak ([\d.]+) GB")


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "c.mp4", frames=3, size_hw=(36, 64)).path


def plan_output(monkeypatch, device: DeviceFacts, *args: str) -> str:
    monkeypatch.setattr(vidrefine.pipeline.devices, "device_facts", lambda **_: device)
    result = CliRunner().invoke(cli, ["info", *args, "--plan"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_plan_says_no_gpu_was_found_when_there_is_no_gpu_and_no_vram(monkeypatch, clip):
    shown = plan_output(monkeypatch, NO_GPU, str(clip))
    assert "no CUDA GPU found: planned without a budget; pass --vram GB to plan for a card" in shown
    assert "none given" not in shown


def test_plan_names_the_card_of_vram_when_vram_is_given_without_a_gpu(monkeypatch, clip):
    shown = plan_output(monkeypatch, NO_GPU, str(clip), "--vram", "24")
    assert "planned for a 24.0 GB card (--vram)" in shown
    assert "smallest card" not in shown


def test_plan_names_the_gpu_it_planned_for_when_one_is_found(monkeypatch, clip):
    shown = plan_output(monkeypatch, DeviceFacts("cuda", "Test GPU", 24.0, 64.0), str(clip))
    assert "Test GPU (24.0 GB): planned for this card" in shown
    assert "smallest card" not in shown


def test_plan_lists_the_smallest_card_each_preset_fits_when_there_is_no_gpu(monkeypatch, clip):
    shown = plan_output(monkeypatch, NO_GPU, str(clip), "--size", "1080p")
    cards = {name: (int(card), float(peak)) for name, card, peak in CARD_ROW.findall(shown)}
    assert set(cards) == set(available_presets()), shown
    for card, peak in cards.values():
        assert peak <= card
    # faithful (1920x1072, batched guidance) needs the 80 GB card here; the card below is refused
    assert cards["faithful"][0] == 80 and cards["default"][0] < 80
    source = SourceFacts.of_media(probe(clip))
    config = load_config("faithful", {"size": "1080p"})
    with pytest.raises(DoesNotFit):
        plan_clip(source, config, DeviceFacts("cuda", "48 GB card", 48.0, 32.0))
