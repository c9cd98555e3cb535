"""`vidrefine tune prepare`: windows, captions, the cache and its reuse, bad data one line each."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from tests.media import decode_index, make_clip
from tests.train.conftest import CAPTION, invoke, prepare_args, still_image
from vidrefine.train.cache import PrepareSettings, TrainCache, window_key
from vidrefine.train.data import find_clips, plan_windows
from vidrefine.train.frames import window_frames


def _window_files(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "windows").glob("*.safetensors")}


def test_cache_holds_latents_and_states_per_window_when_prepared(tune_cache) -> None:
    cache = TrainCache(tune_cache)
    assert len(cache) == 2  # the clip's one window and the still picture
    names = sorted(cache.window(i).name for i in range(2))
    assert names == ["blocks.mp4 frames 0-5", "still.png frames 0-1"]
    for index in range(2):
        window = cache.window(index)
        frames = 1 if window.name.startswith("still") else 2  # latent frames of 1 and 5
        assert tuple(window.hr.shape) == (frames, 16, 4, 4) == cache.latent_shape(index)
        assert len(window.degraded) == 2
        assert all(d.shape == window.hr.shape for d in window.degraded)
        assert not any(torch_equal(d, window.hr) for d in window.degraded)
        assert tuple(window.context.shape) == (226, 32)  # T5 states, padded to 226


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_each_copy_records_its_seeded_degradation_when_cached(tune_cache) -> None:
    records = []
    for path in sorted((tune_cache / "windows").glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            info = json.loads(f.metadata()["info"])
        assert info["caption"] in (CAPTION, "a still picture of coloured noise")
        records += info["copies"]
    assert len(records) == 4
    assert all(r["kind"] in ("weak", "strong") and isinstance(r["seed"], int) for r in records)
    assert len({r["seed"] for r in records}) == 4  # every copy its own seed


def test_rerun_reuses_every_window_when_nothing_changed(tune_cache, tune_data, tune_weights):
    before = _window_files(tune_cache)
    code, output = invoke(prepare_args(tune_data, tune_cache, tune_weights))
    assert code == 0, output
    assert "0 made, 2 reused" in output
    assert _window_files(tune_cache) == before


def test_fingerprint_changes_when_the_file_or_a_setting_changes(tmp_path) -> None:
    make_clip(tmp_path / "a.mp4", frames=5, size_hw=(64, 64))
    (tmp_path / "a.txt").write_text("x")
    window = next(plan_windows(find_clips(tmp_path), 5, shots=False))
    settings = PrepareSettings(size="64x64", frames=5)
    key = window_key(window, settings, "vae")
    assert window_key(window, settings, "vae") == key
    assert window_key(window, PrepareSettings(size="64x64", frames=5, seed=1), "vae") != key
    assert window_key(window, settings, "other vae") != key
    make_clip(tmp_path / "a.mp4", frames=5, size_hw=(64, 64), seed=1)  # the clip is rewritten
    rewritten = next(plan_windows(find_clips(tmp_path), 5, shots=False))
    assert window_key(rewritten, settings, "vae") != key


def test_windows_stay_inside_shots_when_the_clip_has_a_cut(tmp_path) -> None:
    path = tmp_path / "cut.mp4"
    make_clip(path, frames=6, size_hw=(64, 64))
    dark = make_clip(tmp_path / "dark.mp4", frames=6, size_hw=(64, 64), seed=9)
    _concatenate([path, dark.path], tmp_path / "two.mp4")
    (tmp_path / "two.txt").write_text("two shots")
    path.unlink(), dark.path.unlink()
    clips = find_clips(tmp_path)
    assert [w.start_frame for w in plan_windows(clips, 5, shots=False)] == [0, 5]
    assert [w.start_frame for w in plan_windows(clips, 5, shots=True)] == [0, 6]


def _concatenate(parts: list[Path], out: Path) -> None:
    """Frames of `parts` one after another (the second a different picture: a hard cut)."""
    from vidrefine.io.reader import read_chunks

    frames = []
    for number, part in enumerate(parts):
        with read_chunks(part, 16) as reader:
            for chunk in reader:
                frames += list(chunk.frames if number == 0 else 255 - chunk.frames)
    import av

    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.height, stream.width, stream.pix_fmt = 64, 64, "yuv420p"
        for index, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _read_peak(path: Path, windows) -> tuple[list[int], int]:
    tracemalloc.start()
    try:
        firsts = [decode_index(frames[0]) for frames in window_frames(path, windows)]
        return firsts, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_windows_are_read_one_at_a_time_when_a_long_clip_is_cut(tmp_path) -> None:
    peaks = {}
    for frames in (27, 90):
        folder = tmp_path / str(frames)
        folder.mkdir()
        clip = make_clip(folder / "long.mp4", frames=frames, size_hw=(64, 96))
        (folder / "long.txt").write_text("long")
        windows = list(plan_windows(find_clips(folder), 9, shots=False))
        firsts, peaks[frames] = _read_peak(clip.path, windows)
        assert firsts == list(range(0, frames - 8, 9))  # every window, from its own first frame
    assert peaks[90] < 1.25 * peaks[27]  # a longer clip costs no more memory
    assert peaks[90] < 90 * 64 * 96 * 3 / 2  # far less than the clip


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("empty", "no clips or images"),
        ("short", "shorter than one window of 9"),
        ("orphan", "a caption file for another clip"),
        ("srt-other", "captions file is for another clip"),
        ("uncaptioned", "no caption; write"),
        ("metadata-key", "unknown keys colour"),
        ("pair-short", "a pair is the same frames at two sizes"),
    ],
)
def test_bad_data_is_one_line_when_prepared(tmp_path, tune_weights, layout, expected) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _bad_layout(data, layout)
    code, output = invoke(
        [
            "tune",
            "prepare",
            data,
            "-o",
            tmp_path / "cache",
            "--frames",
            "9",
            "--no-shots",
            "--weights",
            tune_weights,
        ]
    )
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidrefine: error: "), output
    assert expected in lines[0]
    assert not (tmp_path / "cache").exists()  # checked before anything was made


def _bad_layout(data: Path, layout: str) -> None:
    if layout == "empty":
        return
    make_clip(data / "a.mp4", frames=5 if layout == "short" else 9, size_hw=(64, 64))
    if layout == "orphan":
        (data / "a.txt").write_text("a")
        (data / "b.txt").write_text("b is not here")
    elif layout == "srt-other":
        (data / "a.captions.srt").write_text("1\n00:00:00,000 --> 00:00:09,000\nlong\n")
    elif layout == "metadata-key":
        (data / "metadata.jsonl").write_text('{"video": "a.mp4", "caption": "a", "colour": 1}\n')
    elif layout == "pair-short":
        make_clip(data / "a_lr.mp4", frames=5, size_hw=(32, 32))
        line = {"video": "a.mp4", "caption": "a", "lr_video": "a_lr.mp4"}
        (data / "metadata.jsonl").write_text(json.dumps(line) + "\n")
    elif layout == "short":
        (data / "a.txt").write_text("a")


def test_frames_off_the_grid_are_refused_when_given(tmp_path, tune_data, tune_weights) -> None:
    code, output = invoke(prepare_args(tune_data, tmp_path / "c", tune_weights) + ["--frames", "6"])
    assert code == 2 and "1 + 4k frames" in output


def test_a_folder_of_other_files_is_never_written_into_when_given_as_cache(
    tmp_path, tune_data, tune_weights
) -> None:
    cache = tmp_path / "mine"
    cache.mkdir()
    (cache / "notes.txt").write_text("keep me")
    code, output = invoke(prepare_args(tune_data, cache, tune_weights))
    assert code == 4, output
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]


def test_nothing_is_left_behind_when_prepare_fails_before_a_window(
    tmp_path, tune_data, tune_weights
) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tune_weights, weights)
    (weights / "3d-vae.pt").write_bytes(b"not a checkpoint")
    code, output = invoke(prepare_args(tune_data, tmp_path / "cache", weights))
    assert code == 5, output
    assert not (tmp_path / "cache").exists()


def test_pairs_use_their_low_res_clip_when_listed_in_metadata(tmp_path, tune_weights) -> None:
    data = tmp_path / "pairs"
    data.mkdir()
    make_clip(data / "hr.mp4", frames=1, size_hw=(64, 64))
    still_image(data / "lr.png", size_hw=(16, 16))
    (data / "metadata.jsonl").write_text(
        json.dumps({"video": "hr.mp4", "caption": "pair", "lr_video": "lr.png"}) + "\n"
    )
    cache = tmp_path / "cache"
    code, output = invoke(
        [
            "tune",
            "prepare",
            data,
            "-o",
            cache,
            "--size",
            "32x32",
            "--frames",
            "1",
            "--copies",
            "1",
            "--strong-prob",
            "1",
            "--no-shots",
            "--weights",
            tune_weights,
        ]
    )
    assert code == 0, output
    (path,) = (cache / "windows").glob("*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        (record,) = json.loads(f.metadata()["info"])["copies"]
    assert record["kind"] == "pair"


def test_images_are_one_frame_windows_whatever_the_frames(tmp_path) -> None:
    still_image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a")
    (window,) = plan_windows(find_clips(tmp_path), 49)
    assert (window.start_frame, window.frames, window.caption) == (0, 1, "a")
    assert np.asarray(next(window_frames(window.clip.path, [window]))).shape == (1, 64, 80, 3)
