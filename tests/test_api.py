"""The Python API (`vidrefine.Refiner`) on tiny random weights: files, batches, frames in memory."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import ColorRange, Colorspace

import vidrefine
from tests.media import make_clip
from vidrefine import Refiner
from vidrefine.errors import BadInput, MissingWeights, OutputExists
from vidrefine.plan.clip import SourceFacts

# 9-frame windows (3 latents) with a stride of 8 frames keep the tiny models fast on 2 CPU cores;
# crf 0 makes the written file as close to the refined frames as yuv420p allows.
TINY = {"size": "96x64", "steps": 2, "window_latent": 3, "window_overlap_latent": 1, "crf": 0}
CAPTION = "a small test clip of bright and dark blocks"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return vidrefine.write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def refiner(weights) -> Refiner:
    """One refiner for the module: its models stay loaded between tests."""
    return Refiner.from_pretrained(weights=weights, preset="default", offline=True, **TINY)


@pytest.fixture(autouse=True)
def _own_resume_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIDREFINE_CACHE", str(tmp_path / "resume-cache"))


def decoded(path: Path) -> tuple[np.ndarray, list[float]]:
    """Every frame of `path` as rgb24 (T, H, W, 3) and its presentation time in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24") for f in frames]), [float(f.time) for f in frames]


def seeded_frames(count: int, size_hw: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *size_hw, 3), dtype=np.uint8)


def test_upscale_keeps_frame_count_timestamps_and_audio_when_given_a_vfr_clip_with_audio(
    tmp_path, refiner
):
    clip = make_clip(
        tmp_path / "in.mp4", frames=20, size_hw=(48, 64), audio=True, fps=Fraction(24), vfr=True
    )
    out = tmp_path / "out.mp4"

    result = refiner.upscale(clip.path, out, caption=CAPTION)

    frames, out_times = decoded(out)
    _, src_times = decoded(clip.path)
    assert result.frames == len(frames) == clip.frames == 20
    np.testing.assert_allclose(out_times, src_times, atol=1e-3)  # variable frame rate kept
    assert frames.shape[1:3] == result.output_hw == (64, 96)
    src, res = vidrefine.probe(clip.path), vidrefine.probe(out)
    assert len(res.audio) == len(src.audio) == 1
    assert abs(res.audio[0].duration_s - src.audio[0].duration_s) < 0.05
    # 20 frames in 9-frame windows at a stride of 8: windows start at frames 0, 8 and 16
    assert result.windows == len(result.plan.windows) == 3


def test_upscale_raises_output_exists_and_leaves_the_file_when_output_exists_without_overwrite(
    tmp_path, refiner
):
    clip = make_clip(tmp_path / "in.mp4", frames=5, size_hw=(48, 64))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")

    with pytest.raises(OutputExists, match="out.mp4"):
        refiner.upscale(clip.path, out, caption=CAPTION)

    assert out.read_bytes() == b"an earlier result"


def test_upscale_many_reports_a_broken_input_and_writes_the_others_in_order_when_one_fails(
    tmp_path, refiner
):
    good_a = make_clip(tmp_path / "a.mp4", frames=9, size_hw=(48, 64)).path
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is not a video\n")
    good_b = make_clip(tmp_path / "b.mp4", frames=5, size_hw=(48, 64), seed=1).path
    jobs = [
        (good_a, tmp_path / "a_out.mp4", CAPTION),
        (broken, tmp_path / "broken_out.mp4", CAPTION),
        (good_b, tmp_path / "b_out.mp4", "another caption"),
    ]

    outcomes = refiner.upscale_many(jobs)

    assert [outcome.job.input for outcome in outcomes] == [Path(i) for i, _, _ in jobs]
    first, failure, last = outcomes
    assert isinstance(failure, vidrefine.JobFailure)
    assert "broken.mp4" in failure.error and "\n" not in failure.error
    assert isinstance(failure.cause, BadInput)
    assert not (tmp_path / "broken_out.mp4").exists()
    for outcome, frames in ((first, 9), (last, 5)):
        assert isinstance(outcome, vidrefine.JobResult)
        assert outcome.frames == len(decoded(outcome.job.output)[0]) == frames


@pytest.mark.parametrize("as_list", [False, True], ids=["array", "list_of_frames"])
def test_stream_yields_one_output_frame_per_input_frame_when_frames_are_in_memory(refiner, as_list):
    frames = seeded_frames(13)  # two windows: the second is padded past the end
    plan = refiner.plan(len(frames), (48, 64), Fraction(12))
    given = list(frames) if as_list else frames

    out = list(refiner.stream(given, caption=CAPTION, frame_count=len(frames), fps=12))

    assert len(out) == len(frames)
    assert all(f.shape == (*plan.geometry.output_hw, 3) and f.dtype == np.uint8 for f in out)
    assert plan.geometry.output_hw == (64, 96)


def test_stream_gives_identical_frames_when_the_same_frames_are_streamed_twice(refiner):
    frames = seeded_frames(13, seed=5)

    def run(given) -> np.ndarray:
        return np.stack(list(refiner.stream(given, caption=CAPTION, frame_count=13, fps=12)))

    first, second, as_list = run(frames), run(frames), run(list(frames))

    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, as_list)


def through_yuv420p(frames: np.ndarray) -> np.ndarray:
    """`frames` as the writer stores them (BT.709 limited-range 4:2:0, its default tags) and as
    a reader gets them back: the random tiny weights paint per-pixel colour noise, so 4:2:0
    chroma alone moves them by about 12 levels on average.
    """
    matrix = {"dst_colorspace": Colorspace.ITU709, "dst_color_range": ColorRange.MPEG}
    back = {"src_colorspace": Colorspace.ITU709, "src_color_range": ColorRange.MPEG}
    out = []
    for frame in frames:
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        yuv = rgb.reformat(format="yuv420p", **matrix)
        out.append(yuv.reformat(format="rgb24", **back).to_ndarray())
    return np.stack(out)


def test_stream_matches_upscale_when_fed_the_decoded_frames_of_the_same_cfr_clip(tmp_path, refiner):
    clip = make_clip(tmp_path / "in.mp4", frames=20, size_hw=(48, 64), fps=Fraction(12))
    out = tmp_path / "out.mp4"
    refiner.upscale(clip.path, out, caption=CAPTION)  # crf 0: lossless but for yuv420p
    written = np.concatenate([chunk.frames for chunk in vidrefine.read_chunks(out, 16)])
    info = vidrefine.probe(clip.path)
    chunks = (chunk.frames for chunk in vidrefine.read_chunks(clip.path, 16))  # pts order

    streamed = np.stack(
        list(refiner.stream(chunks, caption=CAPTION, frame_count=info.frame_count, fps=info.fps))
    )

    assert streamed.shape == written.shape
    difference = np.abs(through_yuv420p(streamed).astype(np.int16) - written).mean()
    # 0 when both ran the same; another caption moves the tiny models' output by ~2.5 levels
    assert difference < 0.5, f"stream and upscale differ by {difference:.2f} levels on average"


def test_from_pretrained_raises_missing_weights_naming_each_file_when_offline_without_them(
    tmp_path,
):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "stage1.pt").write_bytes(b"not needed to upscale")

    with pytest.raises(MissingWeights) as caught:
        Refiner.from_pretrained(weights=folder, offline=True)

    message = str(caught.value)
    for name in ("3d-vae.pt", "stage2.pt", "t5-v1_1-xxl"):
        assert name in message
    assert "stage1" not in message  # upscaling never needs the stage-I weights


@pytest.mark.parametrize(
    ("settings", "key"),
    [({"window_overlap_latent": 0}, "window_overlap_latent"), ({"stepz": 2}, "stepz")],
    ids=["out_of_range", "unknown_key"],
)
def test_from_pretrained_raises_bad_input_before_looking_for_weights_when_a_setting_is_invalid(
    tmp_path, settings, key
):
    nowhere = tmp_path / "no-such-folder"  # a weight lookup would raise MissingWeights

    with pytest.raises(BadInput, match=key):
        Refiner.from_pretrained(weights=nowhere, offline=True, **settings)


def upscaled_plan_and_facts(tmp_path: Path, refiner: Refiner):
    clip = make_clip(tmp_path / "in.mp4", frames=9, size_hw=(48, 64), audio=True, fps=Fraction(12))
    result = refiner.upscale(clip.path, tmp_path / "out.mp4", caption=CAPTION)
    return result.plan, SourceFacts.of_media(vidrefine.probe(clip.path))


def test_plan_decides_what_upscale_ran_when_given_the_clips_frames_size_and_fps(tmp_path, refiner):
    ran, facts = upscaled_plan_and_facts(tmp_path, refiner)

    plan = refiner.plan(facts.frame_count, facts.display_hw, facts.fps)

    planned, expected = plan.to_dict(), ran.to_dict()
    for part in ("device", "geometry", "windowing", "windows", "memory", "models"):
        assert planned[part] == expected[part], part
    assert plan.line() == ran.line()


def test_plan_file_is_the_plan_upscale_ran_when_given_the_same_file(tmp_path, refiner):
    clip = make_clip(tmp_path / "in.mp4", frames=9, size_hw=(48, 64), audio=True, fps=Fraction(12))
    planned = refiner.plan_file(clip.path)
    result = refiner.upscale(clip.path, tmp_path / "out.mp4", caption=CAPTION)
    assert planned.to_dict() == result.plan.to_dict()
    assert planned.source.audio_streams == 1
