"""What the pipeline refuses: one line each, a ValueError for diffusers code and a BadInput."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidrefine.errors import BadInput


def refusal(pipe, **call) -> str:
    with pytest.raises(ValueError) as caught:
        pipe(**{"prompt": "a caption", "height": 64, "width": 64, "num_frames": 9, **call})
    assert isinstance(caught.value, BadInput)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_pipeline_points_to_refiner_when_the_clip_is_longer_than_its_window(pipe) -> None:
    frames = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    message = refusal(pipe, video=frames)
    assert message.startswith("video has 10 frames;") and "Refiner" in message


@pytest.mark.parametrize(
    ("video", "call", "says"),
    [
        (np.zeros((9, 32, 32), dtype=np.uint8), {}, "video of shape (9, 32, 32) is not frames"),
        (np.full((9, 32, 32, 3), 2.0), {}, "not [0, 1]"),
        ([], {}, "video holds no frames"),
        ("missing.mp4", {}, "video file not found: missing.mp4"),
        (np.zeros((9, 32, 32, 3), np.uint8), {"num_frames": 8}, "num_frames=8: a window is 1 + 4k"),
        (np.zeros((9, 32, 32, 3), np.uint8), {"width": None}, "give both height and width"),
        (np.zeros((9, 32, 32, 3), np.uint8), {"strength_step": 500}, "strength_step = 500"),
        (np.zeros((9, 32, 32, 3), np.uint8), {"output_type": "mp4"}, "output_type 'mp4'"),
    ],
)
def test_pipeline_refuses_in_one_line_when_given_what_it_cannot_take(
    pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, video, call: dict, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert says in refusal(pipe, video=video, **call)


def test_pipeline_reads_a_video_file_as_vidrefine_reads_it_when_given_a_path(tmp_path) -> None:
    from tests.media import make_clip, read_all
    from vidrefine.diffusers.frames import as_frames

    clip = make_clip(tmp_path / "clip.mp4", frames=5, size_hw=(32, 48))
    frames = as_frames(str(clip.path))
    expected, _, _ = read_all(clip.path)
    assert frames.dtype == np.uint8 and frames.shape == (5, 32, 48, 3)
    assert np.array_equal(frames, expected)
