"""Issue 20, "honest errors" in the Python API: typed errors with one clear message, checked
before the work where they can be, and progress shown by default (tiny random weights, CPU).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.media import make_clip
from vidrefine import Refiner
from vidrefine.errors import BadInput

# 5-frame windows (2 latents) at 64 pixels high keep every call a few seconds on 2 CPU cores.
TINY = {"size": "64p", "steps": 1, "window_latent": 2, "window_overlap_latent": 1}
TINY |= {"vae_mode": "whole"}
CAPTION = "a small test clip"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def refiner(stage2_weights) -> Refiner:
    """One silent refiner for the module: its models stay loaded between tests."""
    return Refiner.from_pretrained(stage2_weights, offline=True, progress=False, **TINY)


@pytest.fixture(autouse=True)
def _own_resume_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIDREFINE_CACHE", str(tmp_path / "resume-cache"))


def frames(count: int, size_hw: tuple[int, int] = (32, 48)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, *size_hw, 3), dtype=np.uint8)


# ---- devices --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "phrase"),
    [
        ("bogus", "not a device"),
        ("cuda:x", "not a device"),
        ("mps", "runs on 'cpu' or 'cuda'"),
        ("meta", "runs on 'cpu' or 'cuda'"),
    ],
)
def test_a_device_that_is_not_one_is_bad_input_when_the_refiner_is_made(
    stage2_weights, device, phrase
):
    with pytest.raises(BadInput, match=phrase) as caught:
        Refiner.from_pretrained(stage2_weights, offline=True, device=device, progress=False)
    assert "\n" not in str(caught.value) and repr(device) in str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_cuda_without_a_gpu_is_bad_input_before_any_loading_when_asked_for(stage2_weights, device):
    with pytest.raises(BadInput, match="no CUDA GPU|without CUDA") as caught:
        Refiner.from_pretrained(stage2_weights, offline=True, device=device, progress=False)
    assert "device='cpu'" in str(caught.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_index_past_the_last_gpu_is_bad_input_when_asked_for(stage2_weights):
    past = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(BadInput, match="CUDA GPU"):
        Refiner.from_pretrained(stage2_weights, offline=True, device=past, progress=False)


# ---- stream(): frames that change size, frame counts that lie -------------------------------


def test_stream_refuses_the_first_frame_of_another_size_naming_it_when_frames_change_size(
    refiner,
):
    def changing():
        for index in range(9):
            yield frames(1, (32, 48) if index < 3 else (40, 48))[0]

    with pytest.raises(BadInput) as caught:
        list(refiner.stream(changing(), caption=CAPTION, frame_count=9))
    message = str(caught.value)
    assert "frame 3" in message and "48x40" in message and "48x32" in message


@pytest.mark.parametrize("frame_count", [4, 9])
def test_stream_refuses_a_frame_count_that_the_array_contradicts_before_any_work(
    refiner, frame_count
):
    given = frames(6)
    with pytest.raises(BadInput, match=f"frame_count={frame_count}.*6 frames"):
        next(refiner.stream(given, caption=CAPTION, frame_count=frame_count))


def test_stream_refuses_more_frames_than_frame_count_said_when_they_come_from_an_iterator(
    refiner,
):
    with pytest.raises(BadInput, match="frame_count=4.*frame 4"):
        list(refiner.stream(iter(frames(6)), caption=CAPTION, frame_count=4))


def test_stream_refuses_fewer_frames_than_frame_count_said_when_the_iterator_ends(refiner):
    with pytest.raises(BadInput, match="frame_count=9.*ended after 2"):
        list(refiner.stream(iter(frames(2)), caption=CAPTION, frame_count=9))


@pytest.mark.parametrize("frame_count", [0, -3])
def test_stream_refuses_a_frame_count_below_one_when_given(refiner, frame_count):
    with pytest.raises(BadInput, match="frame_count"):
        next(refiner.stream(iter(frames(3)), caption=CAPTION, frame_count=frame_count))


# ---- outputs: the CLI's rules, met through the API ------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("clips")
    a = make_clip(folder / "a.mp4", frames=5, size_hw=(32, 48)).path
    b = make_clip(folder / "b.mp4", frames=5, size_hw=(32, 48), seed=1).path
    return a, b


@pytest.mark.parametrize("suffix", [".avi", ".webm", ".MP4x", ""])
def test_upscale_refuses_an_output_container_the_cli_refuses_when_named(
    refiner, clips, tmp_path, suffix
):
    out = tmp_path / f"out{suffix}"
    with pytest.raises(BadInput, match="must end in .mp4, .mkv, .mov"):
        refiner.upscale(clips[0], out, caption=CAPTION)
    with pytest.raises(BadInput, match="must end in"):
        refiner.upscale_many([(clips[0], tmp_path / "fine.mp4", CAPTION), (clips[1], out, CAPTION)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_upscale_many_refuses_two_jobs_writing_one_file_before_any_work_when_given(
    refiner, clips, tmp_path, overwrite
):
    (tmp_path / "sub").mkdir()
    same = [tmp_path / "out.mp4", tmp_path / "sub" / ".." / "out.mp4"]
    jobs = [(clips[0], same[0], CAPTION), (clips[1], same[1], CAPTION)]
    with pytest.raises(BadInput, match="would both be written to"):
        refiner.upscale_many(jobs, overwrite=overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


# ---- progress: shown by default, on stderr ------------------------------------------------


def test_progress_is_shown_on_stderr_by_default_and_silenced_by_false_when_streaming(
    refiner, capfd
):
    shown = refiner.configured(**TINY)  # progress left out: the default; the models are shared
    assert len(list(shown.stream(frames(5), caption=CAPTION))) == 5
    out, err = capfd.readouterr()
    assert out == ""
    assert "vidrefine: plan:" in err and "vidrefine: windows" in err
    quiet = refiner.configured(progress=False, **TINY)
    assert len(list(quiet.stream(frames(5), caption=CAPTION))) == 5
    assert capfd.readouterr() == ("", "")


def test_the_api_module_imports_no_display_library_when_imported():
    probe = "import sys, vidrefine.pipeline.api; print('rich' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
