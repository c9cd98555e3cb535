"""Tiny official-format stage-II weights for tests/hf_export (the fixtures are in its conftest).

The VAE has one resnet per level (the fewest the official layout allows), so the CPU passes of
diffusers' VAE and vidrefine's stay short; everything else is the shared tiny fixtures'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from dit_fixtures import official_dit_tensors, write_official
from t5_fixtures import TINY_T5_WIDTH, make_tiny_t5
from vae_fixtures import official_vae_shapes

VAE_WIDTHS = (32, 32, 32, 32)
SIZE_HW = (64, 64)  # the smallest output size vidrefine accepts
CLIP_FRAMES = 9
SEED = 5


def pipeline_frames(pipe, clip: np.ndarray, prompt: str, steps: int, **arguments) -> np.ndarray:
    """The pipeline's frames (T, H, W, 3) in [0, 1] for `clip` at SIZE_HW, generator SEED."""
    height, width = SIZE_HW
    out = pipe(
        video=clip,
        prompt=prompt,
        num_inference_steps=steps,
        height=height,
        width=width,
        num_frames=CLIP_FRAMES,
        generator=torch.Generator().manual_seed(SEED),
        **arguments,
    )
    return out.frames[0]


def write_official_vae(path: Path, seed: int) -> None:
    """3d-vae.pt's layout with one resnet per level, seeded random weights."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in sorted(official_vae_shapes(VAE_WIDTHS, layers=1).items()):
        if len(shape) == 1:
            base = 1.0 if "norm" in key and key.endswith(".weight") else 0.0
            tensors[key] = base + 0.1 * torch.randn(shape, generator=gen)
        else:
            tensors[key] = torch.randn(shape, generator=gen) / float(np.prod(shape[1:])) ** 0.5
    torch.save({"state_dict": tensors}, path)


def write_weights(folder: Path, shared: Path | None = None) -> Path:
    """3d-vae.pt, stage2.pt and t5-v1_1-xxl/ in `folder`, as vidrefine finds them.

    `shared` is a weights folder whose stage2.pt and T5 (the same tiny ones) are linked
    instead of built again; the VAE is always this module's smaller one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_official_vae(folder / "3d-vae.pt", seed=1)
    if shared is not None:
        for name in ("stage2.pt", "t5-v1_1-xxl"):
            (folder / name).symlink_to(shared / name)
        return folder
    write_official(folder / "stage2.pt", official_dit_tensors(text_dim=TINY_T5_WIDTH, seed=2))
    make_tiny_t5(folder / "t5-v1_1-xxl")
    return folder
