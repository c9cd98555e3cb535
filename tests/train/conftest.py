"""Shared, session-scoped fixtures of the training tests: tiny official-format weights, a small
data folder and the cache `tune prepare` makes of it (built once, read by many tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.media import make_clip

# A DiT smaller than the e2e one (1 block, hidden 64, adaLN width 64): training steps are cheap.
DIT = {"hidden": 64, "layers": 1, "time_dim": 64}
FRAMES = 5  # frames per window
SIZE = "32x32"  # training crops may be smaller than upscale sizes
CAPTION = "a grid of bright and dark blocks that blink"


def write_weights(folder: Path, t5_folder: Path, seed: int = 2) -> Path:
    """3d-vae.pt and stage2.pt (the small DiT) in official formats, beside a link to a tiny T5."""
    from diffusers_fixtures import write_official_vae
    from dit_fixtures import official_dit_tensors, write_official
    from t5_fixtures import TINY_T5_WIDTH

    folder.mkdir(parents=True, exist_ok=True)
    write_official_vae(folder / "3d-vae.pt", seed=1)  # one resnet per level: fast passes
    dit = official_dit_tensors(text_dim=TINY_T5_WIDTH, seed=seed, **DIT)
    write_official(folder / "stage2.pt", dit)
    (folder / "t5-v1_1-xxl").symlink_to(t5_folder, target_is_directory=True)
    return folder


def still_image(path: Path, size_hw: tuple[int, int] = (64, 80), seed: int = 3) -> Path:
    import av

    pixels = np.random.default_rng(seed).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    av.VideoFrame.from_ndarray(pixels, format="rgb24").to_image().save(path)
    return path


def invoke(args: list[str]) -> tuple[int, str]:
    """`vidrefine ARGS` through click's runner: (exit code, stdout and stderr together)."""
    from vidrefine.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def tune_weights(tmp_path_factory, stage2_weights) -> Path:
    """The small weights; the tiny T5 is the end-to-end tests' own (built once a session)."""
    return write_weights(tmp_path_factory.mktemp("tune-weights"), stage2_weights / "t5-v1_1-xxl")


@pytest.fixture(scope="session")
def tune_data(tmp_path_factory) -> Path:
    """One 5-frame clip (one window) and one still picture, each with a .txt caption."""
    folder = tmp_path_factory.mktemp("tune-data")
    make_clip(folder / "blocks.mp4", frames=FRAMES, size_hw=(64, 64))
    (folder / "blocks.txt").write_text(CAPTION + "\n")
    still_image(folder / "still.png")
    (folder / "still.txt").write_text("a still picture of coloured noise")
    return folder


def prepare_args(data: Path, cache: Path, weights: Path, *extra: str) -> list[str]:
    return [
        "tune",
        "prepare",
        data,
        "-o",
        cache,
        "--size",
        SIZE,
        "--frames",
        str(FRAMES),
        "--copies",
        "2",
        "--no-shots",
        "--weights",
        weights,
        *extra,
    ]


@pytest.fixture(scope="session")
def tune_cache(tmp_path_factory, tune_weights, tune_data) -> Path:
    cache = tmp_path_factory.mktemp("tune-cache") / "cache"
    code, output = invoke(prepare_args(tune_data, cache, tune_weights))
    assert code == 0, output
    return cache
