"""One clip of 5 windows refined by 2 and by 3 ranks (gloo, CPU, tiny official-format weights)
is bit-identical to the one-process file, also when some windows are reused from a kept run.

One spawn of 3 processes: rank 2 refines the clip alone (keeping its windows) while ranks 0-1
refine it together; then all 3 refine it, reusing the windows rank 2 kept except two; last,
all 3 refine it with every DiT pass split by tokens (`--parallel sequence`, written by rank 0).
"""

from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.distributed.harness import free_port

WORLD = 3
# 9-frame windows with a stride of 4: 25 frames are 5 windows
SETTINGS = {"size": "64x64", "steps": 2, "window_latent": 3, "window_overlap_latent": 2}
SETTINGS |= {"crf": 0, "vae_mode": "whole", "encoder_preset": "ultrafast", "dtype": "fp32"}
SETTINGS |= {"vae_dtype": "fp32", "background_io": False}
FRAMES = 25
TEXT_DIM = 16  # width of the stand-in caption embedding
DROPPED = (1, 3)  # kept windows removed before the 3-rank run: computed again, the rest reused


@pytest.fixture(scope="module")
def lean_weights(tmp_path_factory) -> Path:
    """Tiny official-format VAE (one resnet a level: cheap to decode) and stage-II DiT.

    No T5: the workers condition on a seeded caption embedding, so none imports transformers.
    """
    from dit_fixtures import official_dit_tensors, write_official
    from vae_fixtures import official_vae_shapes

    folder = tmp_path_factory.mktemp("lean-weights")
    gen = torch.Generator().manual_seed(1)
    vae = {}
    for key, shape in sorted(official_vae_shapes((32, 32, 32, 32), layers=1).items()):
        fan_in = max(1, torch.Size(shape[1:]).numel())
        base = 1.0 if "norm" in key and key.endswith(".weight") else 0.0
        scale = 0.1 if len(shape) == 1 else fan_in**-0.5
        vae[key] = base + scale * torch.randn(shape, generator=gen)
    torch.save({"state_dict": vae}, folder / "3d-vae.pt")
    write_official(folder / "stage2.pt", official_dit_tensors(text_dim=TEXT_DIM, seed=2))
    return folder


def refiner_and_job(weights: Path, clip: Path, output: Path):
    """A refiner on the tiny weights, the job, its plan and probe (every rank the same)."""
    from vidrefine.config import RunConfig
    from vidrefine.io.probe import probe
    from vidrefine.pipeline.loading import STAGE2_FILE, VAE_FILE, load_stage_two
    from vidrefine.pipeline.refine import ClipRefiner, RefineJob
    from vidrefine.plan.clip import SourceFacts, plan_clip
    from vidrefine.plan.hardware import CPU

    config = RunConfig(**SETTINGS)
    info = probe(clip)
    plan = plan_clip(SourceFacts.of_media(info), config, CPU)
    job = RefineJob(clip, output, "a tiny clip of moving blocks")
    paths = {VAE_FILE: weights / VAE_FILE, STAGE2_FILE: weights / STAGE2_FILE}
    models = load_stage_two(paths, plan.models, torch.device("cpu"))
    caption = torch.randn(1, 8, TEXT_DIM, generator=torch.Generator().manual_seed(3))
    return ClipRefiner(models, config, lambda text: caption), job, plan, info


def worker(rank: int, port: int, weights: str, clip: str, work: str) -> None:
    """Rank 2 alone and ranks 0-1 together, then all three; rank 0 writes what it saw."""
    from tests.e2e.golden import frame_hashes
    from tests.media import read_all
    from vidrefine.io.writer import job_tag
    from vidrefine.pipeline.lockstep import refine_across_ranks, split_refiner
    from vidrefine.pipeline.resume import JobStore

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    root = Path(work)
    pair = dist.new_group([0, 1])
    kept = root / "kept-windows"
    if rank == 2:  # alone, keeping its windows for the 3-rank run
        os.environ["VIDREFINE_CACHE"] = str(kept)
        refiner, job, plan, info = refiner_and_job(Path(weights), Path(clip), root / "one.mp4")
        key = refiner.job_key(job.identity(plan), plan)
        JobStore.clear = lambda self: None  # keep them (this process only)
        refiner.refine_file(job, plan, info, key=key)
        for index in DROPPED:
            (kept / key / f"window_{index:05d}.safetensors").unlink()
    else:
        os.environ["VIDREFINE_CACHE"] = str(root / "pair-cache")
        refiner, job, plan, info = refiner_and_job(Path(weights), Path(clip), root / "two.mp4")
        two = refine_across_ranks(
            refiner, job, plan, info, mode="windows", overwrite=False, resume=True, group=pair
        )
        assert two.reused_windows == 0
    dist.barrier()
    os.environ["VIDREFINE_CACHE"] = str(kept)
    refiner, job, plan, info = refiner_and_job(Path(weights), Path(clip), root / "three.mp4")
    key = refiner.job_key(job.identity(plan), plan)
    three = refine_across_ranks(
        refiner, job, plan, info, mode="windows", overwrite=False, resume=True, key=key
    )
    reused = [None] * WORLD
    dist.all_gather_object(reused, three.reused_windows)
    # every DiT pass split over the 3 ranks by tokens (Ulysses): equal within float rounding
    split = split_refiner(refiner, "sequence")
    assert split_refiner(split, "sequence") is split  # made once, then reused
    os.environ["VIDREFINE_CACHE"] = str(root / "sequence-cache")
    job = dataclasses.replace(job, output=root / "sequence.mp4")
    refine_across_ranks(split, job, plan, info, mode="sequence", overwrite=False, resume=False)
    if rank == 0:
        sequence, one = read_all(root / "sequence.mp4")[0], read_all(root / "one.mp4")[0]
        gap = int(np.abs(sequence.astype(int) - one.astype(int)).max())
        outputs = {name: frame_hashes(root / f"{name}.mp4") for name in ("one", "two", "three")}
        report = {"hashes": outputs, "reused": reused, "frames": three.frames}
        report |= {"tag": job_tag(root / "three.mp4") == key, "windows": len(plan.windows)}
        report["store_left"] = (kept / key).exists()
        report["sequence_gap"] = gap
        (root / "report.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def test_a_clip_on_2_and_3_ranks_is_bit_identical_to_one_process_when_windows_are_reused(
    tmp_path, lean_weights
):
    from tests.media import make_clip

    clip = make_clip(tmp_path / "in.mp4", frames=FRAMES, size_hw=(48, 64), fps=Fraction(24))
    args = (free_port(), str(lean_weights), str(clip.path), str(tmp_path))
    mp.spawn(worker, args=args, nprocs=WORLD)
    report = json.loads((tmp_path / "report.json").read_text())
    hashes = report["hashes"]
    assert report["windows"] == 5
    assert len(hashes["one"]) == FRAMES == report["frames"]
    assert hashes["two"] == hashes["one"], "2 ranks differ from one process"
    assert hashes["three"] == hashes["one"], "3 ranks differ from one process"
    assert report["reused"][0] == 5 - len(DROPPED)  # windows 0, 2 and 4 were kept, by all
    assert report["tag"] and not report["store_left"]
    # sequence: float32 sums in another grouping, within 2 levels of 8 bits (0 measured here)
    assert report["sequence_gap"] <= 2
