"""FlashVideoRefinePipeline == Refiner.stream on the same tiny weights, seed and settings.

The pipeline runs diffusers' CogVideoX VAE where Refiner runs vidrefine's; the two differ by
~1e-5 relative (tests/oracle), which moves a decoded level by at most one here, so the frames
are compared to within 1 level (mean well under 0.05 levels). A generator seeded 5 must give
what `seed=5` gives: the pipeline derives Refiner's noise streams from the generator's seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffusers_fixtures import CLIP_FRAMES, SEED, SIZE_HW, pipeline_frames

from vidrefine.pipeline.api import Refiner
from vidrefine.progress import NullProgress

# preset -> (Refiner settings, pipeline arguments, the caption's prefix)
SETTINGS = {
    "default": ({"steps": 2}, {"steps": 2}, ""),
    "faithful": (  # fp32 weights: bf16 convolutions are very slow on a CPU
        {"dtype": "fp32", "vae_dtype": "fp32"},
        {"steps": 5, "vae_mode": "faithful"},
        "medium motion,",
    ),
}


@pytest.fixture(scope="module")
def refiner(tiny_weights: Path) -> Refiner:
    """Refiner on the same files, the clip one whole window (default preset, seed SEED)."""
    height, width = SIZE_HW
    return Refiner.from_pretrained(
        tiny_weights,
        offline=True,
        progress=NullProgress(),
        size=f"{width}x{height}",
        window_latent=1 + (CLIP_FRAMES - 1) // 4,
        window_overlap_latent=1,
        seed=SEED,
    )


def refiner_frames(refiner: Refiner, preset: str, clip: np.ndarray, caption: str) -> np.ndarray:
    settings, _, _ = SETTINGS[preset]
    known = {k: getattr(refiner.config, k) for k in ("size", "window_latent", "seed")}
    other = refiner.configured(
        preset, progress=NullProgress(), window_overlap_latent=1, **known, **settings
    )
    return np.stack(list(other.stream(clip, caption=caption)))


def levels(frames: np.ndarray) -> np.ndarray:
    return np.rint(frames * 255).astype(int)


@pytest.mark.parametrize("preset", ["default", "faithful"])
def test_pipeline_gives_refiner_frames_when_seed_and_settings_agree(
    preset: str, request, refiner: Refiner, pipe, clip: np.ndarray, caption: str
) -> None:
    if preset == "default":
        got = request.getfixturevalue("default_frames")
    else:
        _, arguments, prefix = SETTINGS[preset]
        got = pipeline_frames(pipe, clip, prefix + caption, **arguments)
    expected = refiner_frames(refiner, preset, clip, caption).astype(int)
    assert got.dtype == np.float32 and got.shape == (CLIP_FRAMES, *SIZE_HW, 3)
    assert got.min() >= 0.0 and got.max() <= 1.0
    difference = np.abs(levels(got) - expected)
    assert difference.max() <= 1, f"{preset}: frames differ by up to {difference.max()} levels"
    assert difference.mean() < 0.05
    assert expected.std() > 10  # a picture, not a constant: the comparison means something
