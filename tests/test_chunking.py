"""Temporal chunk plans on the 1 + 4k grid: coverage, the original's cuts, output ranges."""

from __future__ import annotations

import pytest

from vidrefine.plan.chunking import (
    grid_frames,
    latent_count,
    pixel_count,
    plan_decode_chunks,
    plan_encode_chunks,
)


@pytest.mark.parametrize(("frames", "grid"), [(1, 1), (2, 5), (5, 5), (6, 9), (49, 49), (50, 53)])
def test_frames_pad_up_to_the_next_4k_plus_1_when_off_grid(frames: int, grid: int) -> None:
    assert grid_frames(frames) == grid
    assert pixel_count(latent_count(frames)) == grid


def test_faithful_encode_cuts_17_16_16_when_the_clip_has_49_frames() -> None:
    chunks = plan_encode_chunks(49, 16)
    assert [c.stop - c.start for c in chunks] == [17, 16, 16]
    assert [(c.out_start, c.out_stop) for c in chunks] == [(0, 5), (5, 9), (9, 13)]


def test_faithful_decode_cuts_0_3_then_pairs_when_there_are_13_latents() -> None:
    chunks = plan_decode_chunks(13, 2)
    assert [(c.start, c.stop) for c in chunks] == [
        (0, 3),
        (3, 5),
        (5, 7),
        (7, 9),
        (9, 11),
        (11, 13),
    ]
    assert [c.out_stop - c.out_start for c in chunks] == [9, 8, 8, 8, 8, 8]  # 9 + 5 * 8 = 49


@pytest.mark.parametrize("frames", [1, 5, 9, 13, 25, 49, 53])
@pytest.mark.parametrize("chunk", [0, 4, 8, 16, 100])
def test_encode_chunks_cover_every_frame_once_when_any_chunk_size_is_used(
    frames: int, chunk: int
) -> None:
    chunks = plan_encode_chunks(frames, chunk)
    assert chunks[0].start == 0 and chunks[-1].stop == frames
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert (chunks[0].stop - 1) % 4 == 0 and all((c.stop - c.start) % 4 == 0 for c in chunks[1:])
    assert chunks[-1].out_stop == latent_count(frames)
    assert all(a.out_stop == b.out_start for a, b in zip(chunks, chunks[1:], strict=False))
    for c in chunks:  # 1 + 4k frames -> 1 + k latents first; 4k -> k later
        expected = 1 + (c.stop - 1) // 4 if c.start == 0 else (c.stop - c.start) // 4
        assert c.out_stop - c.out_start == expected


@pytest.mark.parametrize("latents", [1, 2, 3, 4, 13, 14])
@pytest.mark.parametrize("chunk", [0, 1, 2, 3, 50])
def test_decode_chunks_cover_every_latent_once_when_any_chunk_size_is_used(
    latents: int, chunk: int
) -> None:
    chunks = plan_decode_chunks(latents, chunk)
    assert chunks[0].start == 0 and chunks[-1].stop == latents
    assert all(
        a.stop == b.start and a.out_stop == b.out_start
        for a, b in zip(chunks, chunks[1:], strict=False)
    )
    assert chunks[-1].out_stop == pixel_count(latents)


def test_bad_chunk_sizes_are_refused_when_off_the_grid() -> None:
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        plan_encode_chunks(48, 16)
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_encode_chunks(49, 6)
