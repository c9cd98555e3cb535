"""Both vidrefine commands from Python: text to previews (+ 1080p), and upscaling a preview later.

Real weights (fetched into the cache on first use, about 26 GB; a GPU is strongly advised):

    python examples/python_api.py --prompt-file examples/prompts.txt --seeds 0 -o out/

Tiny random weights, no download, runs on a CPU in about a minute (the pictures are noise; it
shows the calls and proves the installation):

    python examples/python_api.py --tiny -o /tmp/vidrefine-api-demo
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import torch

from vidrefine.batch import refine_files
from vidrefine.config import DiTConfig, replace
from vidrefine.presets import load_config
from vidrefine.refine import RefineJob
from vidrefine.t2v import generate_videos
from vidrefine.t2v_manifest import caption_for_preview
from vidrefine.weights import UPSCALE_WEIGHTS, resolve

TINY_STAGE1 = DiTConfig(hidden_size=128, num_layers=2, num_heads=2, text_dim=32)


def write_tiny_weights(folder: Path) -> None:
    """stage1.pt / stage2.pt / 3d-vae.pt in the official layouts, plus a tiny T5 folder."""
    from vidrefine.checkpoints.dit_keys import to_official
    from vidrefine.models.dit import VideoDiT
    from vidrefine.models.vae import CausalVideoVAE
    from vidrefine.selftest import TINY_DIT, TINY_VAE, make_tiny_t5

    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_t5(folder / "t5-v1_1-xxl")
    torch.manual_seed(0)
    for name, config in (("stage1.pt", TINY_STAGE1), ("stage2.pt", TINY_DIT)):
        state = VideoDiT(config).state_dict()
        module = {f"model.diffusion_model.{to_official(k)}": v for k, v in state.items()}
        torch.save({"module": module}, folder / name)
    torch.save({"state_dict": CausalVideoVAE(TINY_VAE).state_dict()}, folder / "3d-vae.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-file", type=Path)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("-o", "--output", type=Path, default=Path("t2v-out"))
    parser.add_argument("--tiny", action="store_true", help="tiny random weights, no download")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    config = load_config("default", {})
    generator: object = "flashvideo-stage1"  # the registered name of the bundled plugin
    weights = None
    if args.tiny:
        from generators.flashvideo_stage1 import FlashVideoStage1

        weights = args.output / "tiny-weights"
        write_tiny_weights(weights)
        # Any Generator object can be passed directly; here stage I at a tiny size.
        generator = FlashVideoStage1(
            size_hw=(16, 32), num_frames=5, fps=Fraction(8), steps=3, dit_config=TINY_STAGE1
        )
        config = replace(config, size="128x64", steps=2, window_latent=2, window_overlap_latent=1)
        prompts = ["a small test scene with a slow camera pan"]
    else:
        prompts = [p for p in args.prompt_file.read_text().splitlines() if p and p[0] != "#"]

    # 1. `vidrefine t2v --preview-only`: previews named p001_seed0_preview.mp4, a manifest.
    jobs = generate_videos(
        prompts,
        seeds,
        config,
        output_dir=args.output,
        preview_only=True,
        generator=generator,
        weights_dir=weights,
        overwrite=True,
    )
    for job in jobs:
        print("preview:", job.preview)

    # 2. `vidrefine upscale PREVIEW.mp4`: commit the first preview, its caption from the manifest.
    preview = jobs[0].preview
    caption = caption_for_preview(preview)
    output = preview.with_name(preview.stem.replace("_preview", "") + "_refined.mp4")
    paths = resolve(UPSCALE_WEIGHTS, weights_dir=weights)
    results = refine_files(
        [RefineJob(preview, output, caption)], config, paths, overwrite=True, resume=False
    )
    print("refined:", results[0])
    # (generate_videos(..., preview_only=False) refines straight from stage I's float frames.)


if __name__ == "__main__":
    main()
