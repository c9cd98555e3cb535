"""Same random weights in diffusers' AutoencoderKLCogVideoX and ours, each loaded from a file.

Ours reads the official-format file through `load_vae`; diffusers gets the same tensors renamed by
the fixture's independent transcription of diffusers' converter rules.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from vae_fixtures import TINY_WIDTHS, to_diffusers_state, write_official_vae  # noqa: E402

from vidrefine.checkpoints import load_vae  # noqa: E402
from vidrefine.pipeline.vae_pass import decode_latents, encode_video  # noqa: E402
from vidrefine.plan.vae import plan_vae  # noqa: E402

REL_TOL = 1e-5


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).norm() / ref.norm()).item()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("vae") / "3d-vae.pt"
    tensors = write_official_vae(path, seed=3)
    ours = load_vae(path)
    ref = diffusers.AutoencoderKLCogVideoX(block_out_channels=TINY_WIDTHS, latent_channels=16)
    ref.load_state_dict(to_diffusers_state(tensors), strict=True)
    return ours, ref.eval()


def _whole(ref):
    ref.num_sample_frames_batch_size = 10**6  # one pass over all frames
    ref.num_latent_frames_batch_size = 10**6
    return ref


def test_whole_clip_encode_matches_diffusers_when_loaded_from_the_official_file(pair) -> None:
    ours, ref = pair
    video = torch.rand(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plan = plan_vae((32, 48), 9, mode="whole")
    with torch.no_grad():
        expected = _whole(ref).encode(video).latent_dist.mean
    got = encode_video(ours, video, plan, sample=False)
    assert got.shape == expected.shape == (1, 16, 3, 4, 6)
    assert _relative_error(got, expected) <= REL_TOL


def test_whole_clip_decode_matches_diffusers_when_loaded_from_the_official_file(pair) -> None:
    ours, ref = pair
    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    plan = plan_vae((32, 48), 9, mode="whole")
    with torch.no_grad():
        expected = _whole(ref).decode(z).sample
    got = decode_latents(ours, z, plan)
    assert got.shape == expected.shape == (1, 3, 9, 32, 48)
    assert _relative_error(got, expected) <= REL_TOL


def test_chunked_passes_match_diffusers_frame_batching_when_the_plans_agree(pair) -> None:
    """diffusers with 4-frame / 2-latent batches runs [0:5],[5:9] and [0:3],[3:5]: our plan with
    encode chunks of 4 frames and decode chunks of 2 latents is the same cut, cache carried.
    """
    ours, ref = pair
    ref.num_sample_frames_batch_size, ref.num_latent_frames_batch_size = 4, 2
    plan = dataclasses.replace(
        plan_vae((16, 16), 9, mode="whole"), encode_chunk_frames=4, decode_chunk_latent=2
    )
    assert [(c.start, c.stop) for c in plan.encode_chunks()] == [(0, 5), (5, 9)]
    video = torch.rand(1, 3, 9, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(video).latent_dist.mean
        whole = _whole(ref).encode(video).latent_dist.mean
    got = encode_video(ours, video, plan, sample=False)
    assert _relative_error(got, expected) <= REL_TOL
    assert _relative_error(whole, expected) > 100 * REL_TOL  # the cut matters (GroupNorm)

    ref.num_sample_frames_batch_size, ref.num_latent_frames_batch_size = 4, 2
    z = torch.randn(1, 16, 5, 2, 2, generator=torch.Generator().manual_seed(3))
    plan = dataclasses.replace(plan_vae((16, 16), 17, mode="whole"), decode_chunk_latent=2)
    assert [(c.start, c.stop) for c in plan.decode_chunks()] == [(0, 3), (3, 5)]
    with torch.no_grad():
        expected = ref.decode(z).sample
    got = decode_latents(ours, z, plan)
    assert _relative_error(got, expected) <= REL_TOL
