"""Shared fixtures: no test may reach the network or the user's real weight cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub, which reads these once at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Hub offline, no $VIDREFINE_WEIGHTS, and an empty per-user cache for every test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("VIDREFINE_WEIGHTS", raising=False)
    cache: Path = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


@pytest.fixture(scope="session")
def stage2_weights(tmp_path_factory) -> Path:
    """Tiny official-format VAE, stage II DiT and T5 (what `upscale` needs), built once a run.

    Shared: tests may read it and add their own preset files, never change the weights.
    """
    from tests.e2e.golden import upscale_weights

    return upscale_weights(tmp_path_factory.mktemp("stage2-weights"))


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> Path:
    """A preset file with the tiny end-to-end settings (`tiny_runs.TEST_PRESET`)."""
    from tiny_runs import TEST_PRESET

    path = tmp_path_factory.mktemp("tiny-preset") / "tiny.toml"
    path.write_text(TEST_PRESET)
    return path
