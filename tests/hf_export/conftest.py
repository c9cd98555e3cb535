"""Fixtures of tests/hf_export: tiny weights, a 9-frame clip and the pipeline, built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers.pipelines")  # not `diffusers`: this folder's name is on sys.path

from diffusers_fixtures import CLIP_FRAMES, pipeline_frames, write_weights  # noqa: E402
from t5_fixtures import tiny_caption  # noqa: E402


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory, stage2_weights: Path) -> Path:
    """3d-vae.pt (one resnet a level), stage2.pt and t5-v1_1-xxl/ (the suite's tiny ones)."""
    return write_weights(tmp_path_factory.mktemp("diffusers-weights"), shared=stage2_weights)


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    """9 seeded uint8 frames (T, H, W, 3) at half the output size."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (CLIP_FRAMES, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def caption() -> str:
    return tiny_caption(30, seed=1)


@pytest.fixture(scope="session")
def pipe(tiny_weights: Path):
    """The pipeline built in this process from the official-format files."""
    from vidrefine.diffusers.export import pipeline_from_weights

    pipeline = pipeline_from_weights(tiny_weights)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def default_frames(pipe, clip: np.ndarray, caption: str) -> np.ndarray:
    """The pipeline's output at the default settings, 2 steps (what an export must give too)."""
    return pipeline_frames(pipe, clip, caption, steps=2)
