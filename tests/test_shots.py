"""Shots: hard cuts found in synthetic footage, windows per shot, captions per shot (issue 14)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tiny_runs import run_cli

from vidrefine.captions import CaptionCue, write_captions
from vidrefine.config import RunConfig
from vidrefine.io.probe import probe
from vidrefine.io.shots import detect_cuts
from vidrefine.plan.clip import SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.shots import MIN_SHOT_FRAMES, plan_shots

HEIGHT, WIDTH = 64, 64
FPS = 24
CPU = DeviceFacts("cpu", "cpu", None, 16.0)


def texture(seed: int, width: int) -> np.ndarray:
    """A smooth seeded colour field (HEIGHT, width, 3): coarse random colours, bilinear."""
    coarse = np.random.default_rng(seed).uniform(0, 255, (HEIGHT // 16 + 2, width // 16 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, HEIGHT)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def scene(seed: int, frames: int, speed: float) -> Iterator[np.ndarray]:
    """A camera panning over its own texture at `speed` pixels a frame."""
    field = texture(seed, WIDTH + int(speed * frames) + 2)
    for i in range(frames):
        x = int(i * speed)
        yield field[:, x : x + WIDTH].astype(np.uint8)


def write_clip(path: Path, frames: Iterator[np.ndarray]) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "0"}  # lossless: a shot decodes the same whatever precedes it
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def cut_footage(*lengths: int) -> Iterator[np.ndarray]:
    """Different moving scenes joined by hard cuts, `lengths` frames each."""
    for seed, length in enumerate(lengths, start=1):
        yield from scene(seed, length, speed=0.5 + 0.5 * seed)


def fade_footage() -> Iterator[np.ndarray]:
    """One scene fading to black and another fading in from it (no hard cut)."""
    for i, frame in enumerate(scene(5, 60, 1.0)):
        yield (frame * (1 - i / 60)).astype(np.uint8)
    for i, frame in enumerate(scene(6, 50, 1.0)):
        yield (frame * (i / 50)).astype(np.uint8)


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    """110 frames: hard cuts at frames 37 and 80."""
    folder = tmp_path_factory.mktemp("shots")
    return write_clip(folder / "cuts.mp4", cut_footage(37, 43, 30))


def cuts_of(path: Path) -> tuple[int, ...]:
    info = probe(path)
    return detect_cuts(path, info, threshold=3.0, min_shot_frames=MIN_SHOT_FRAMES)


def test_hard_cuts_are_found_within_a_frame_when_scenes_are_joined(cut_clip: Path) -> None:
    cuts = cuts_of(cut_clip)
    assert len(cuts) == 2
    assert abs(cuts[0] - 37) <= 1 and abs(cuts[1] - 80) <= 1


@pytest.mark.parametrize("footage", ["pan", "fade"])
def test_no_cut_is_found_when_the_camera_pans_or_the_picture_fades(tmp_path, footage) -> None:
    frames = scene(4, 110, 2.0) if footage == "pan" else fade_footage()
    assert cuts_of(write_clip(tmp_path / f"{footage}.mp4", frames)) == ()


def test_planned_shots_follow_the_file_when_a_clip_is_replaced_at_the_same_path(
    cut_clip: Path, tmp_path: Path
) -> None:
    from vidrefine.pipeline.shots import planned_shots

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(cut_clip.read_bytes())
    config = RunConfig(shots=True)
    assert len(planned_shots(probe(clip), config)) == 3
    assert planned_shots(probe(clip), config) == planned_shots(probe(clip), config)
    write_clip(clip, scene(4, 60, 2.0))  # the same name, another file: one shot, no cut
    assert [(s.start_frame, s.end_frame) for s in planned_shots(probe(clip), config)] == [(0, 60)]
    assert planned_shots(probe(clip), RunConfig(shots=False)) is None


def test_short_shots_join_a_neighbour_when_shots_are_planned() -> None:
    shots = plan_shots((37, 40, 80, 107), 110, Fraction(FPS))  # a 3-frame flash, a 3-frame tail
    # the flash (37-39) joins the shot after it, the tail (107-109) the shot before
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, 37), (37, 80), (80, 110)]
    assert shots[2].start_s == pytest.approx(80 / FPS) and shots[2].end_s == pytest.approx(
        110 / FPS
    )
    assert [(s.start_frame, s.end_frame) for s in plan_shots((), 50, Fraction(FPS))] == [(0, 50)]


def test_faithful_settings_keep_one_stretch_when_the_clip_has_cuts() -> None:
    source = SourceFacts((HEIGHT, WIDTH), 110, Fraction(FPS), Fraction(1, FPS), cuts=(37, 80))
    config = RunConfig(size="64p", window_latent=4, window_overlap_latent=2)
    shot_aware = plan_clip(source, config, CPU)
    single = plan_clip(
        source, RunConfig(size="64p", window_latent=4, window_overlap_latent=2, shots=False), CPU
    )
    assert len(shot_aware.shots) == 3 and len(single.shots) == 1
    assert {w.segment for w in single.windows} == {0}
    assert (
        single.windows
        == plan_clip(
            SourceFacts((HEIGHT, WIDTH), 110, Fraction(FPS), Fraction(1, FPS)), config, CPU
        ).windows
    )


def test_info_lists_the_shots_and_plans_no_window_across_a_cut_when_asked(cut_clip) -> None:
    code, out = run_cli(["info", str(cut_clip), "--shots", "--json"])
    assert code == 0, out
    shots = json.loads(out)["shots"]
    assert [(s["start_frame"], s["end_frame"]) for s in shots] == [(0, 37), (37, 80), (80, 110)]
    code, out = run_cli(["info", str(cut_clip), "--plan", "--json", "--size", "64p"])
    assert code == 0, out
    plan = json.loads(out)
    assert plan["source"]["cuts"] == [37, 80] and len(plan["shots"]) == 3
    for window in plan["windows"]:
        shot = plan["shots"][window["segment"]]
        assert shot["start_frame"] <= window["start_frame"] < window["stop_frame"]
        assert window["stop_frame"] <= shot["end_frame"]
    assert sorted({w["segment"] for w in plan["windows"]}) == [0, 1, 2]


CAPTIONS = (
    "A red fox trots through deep snow under a pale winter sky.",
    "A wooden cabin at dusk, warm light glowing in its small window.",
)


def refine_two_shots(folder: Path, first_seed: int, weights: Path, preset: Path):
    """`upscale` a 12 + 13 frame clip with a captions file beside it; the DiT's caption states
    are recorded through a torch forward hook. Returns (source times, output frames and times,
    states).
    """
    folder.mkdir()
    footage = itertools.chain(scene(first_seed, 12, 1.0), scene(2, 13, 1.5))
    clip = write_clip(folder / "two.mp4", footage)
    cues = (CaptionCue(0.0, 12 / FPS, CAPTIONS[0]), CaptionCue(12 / FPS, 25 / FPS, CAPTIONS[1]))
    write_captions(folder / "two.captions.srt", cues)
    contexts: list[torch.Tensor] = []

    def record(module: torch.nn.Module, args: tuple) -> None:
        if type(module).__name__ == "VideoDiT":
            contexts.append(args[2][:1].detach().clone())

    out = folder / "out.mp4"
    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        args = [str(clip), "-o", str(out), "--weights", str(weights), "--preset", str(preset)]
        code, text = run_cli(["upscale", *args, "--size", "64p"])
    finally:
        hook.remove()
    assert code == 0, text
    with av.open(str(clip)) as source, av.open(str(out)) as result:
        source_times = [f.time for f in source.decode(video=0)]
        frames = [(f.to_ndarray(format="rgb24"), f.time) for f in result.decode(video=0)]
    return source_times, frames, contexts


def test_upscale_refines_each_shot_alone_with_its_caption_when_the_clip_has_a_cut(
    tmp_path: Path, stage2_weights: Path, tiny_preset: Path
) -> None:
    source_times, frames, contexts = refine_two_shots(
        tmp_path / "a", 1, stage2_weights, tiny_preset
    )
    assert [time for _, time in frames] == pytest.approx(source_times)
    assert len(frames) == 25
    # one window a shot (13 frames) x 2 steps, each with its shot's caption
    assert len(contexts) == 4 and torch.equal(contexts[0], contexts[1])
    assert torch.equal(contexts[2], contexts[3]) and not torch.equal(contexts[1], contexts[2])
    assert expected_states(stage2_weights, CAPTIONS[0]).allclose(contexts[0], atol=1e-5)
    assert expected_states(stage2_weights, CAPTIONS[1]).allclose(contexts[2], atol=1e-5)
    # another first shot: the second shot's output does not change (no fusion or fade across)
    _, other, _ = refine_two_shots(tmp_path / "b", 7, stage2_weights, tiny_preset)
    assert not np.array_equal(frames[0][0], other[0][0])
    for (mine, _), (theirs, _) in zip(frames[12:], other[12:], strict=True):
        np.testing.assert_array_equal(mine, theirs)


def expected_states(weights: Path, caption: str) -> torch.Tensor:
    """The tiny T5's states for `caption`, computed here outside the run."""
    from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, resolve
    from vidrefine.pipeline.loading import T5_FOLDER, encode_captions
    from vidrefine.plan.clip import ModelPlacement
    from vidrefine.progress import NullProgress

    paths = resolve(UPSCALE_WEIGHTS, weights_dir=weights, offline=True)
    placement = ModelPlacement("fp32", "fp32", "none")
    states = encode_captions(
        paths[T5_FOLDER], [caption], placement, torch.device("cpu"), NullProgress()
    )
    return states[caption]


def test_captions_file_for_another_clip_fails_with_one_line_when_upscaling(
    cut_clip: Path, tmp_path: Path
) -> None:
    captions = tmp_path / "other.srt"
    write_captions(captions, (CaptionCue(0, 4, "a fox"), CaptionCue(4, 12, "a cabin")))
    out = tmp_path / "out.mp4"
    args = ["upscale", str(cut_clip), "--captions", str(captions), "-o", str(out)]
    code, text = run_cli([*args, "--weights", str(tmp_path / "no-weights")])
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("vidrefine: error: ")]
    assert len(set(errors)) == 1 and "another clip? cue 2 ends at 12.000 s" in errors[0]
    assert not out.exists()


def test_resume_key_holds_every_shot_caption_when_a_captions_file_is_used(tmp_path) -> None:
    from vidrefine.captions import Captions
    from vidrefine.pipeline.refine import RefineJob, file_job_key

    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    clip.write_bytes(b"not decoded here")
    config = RunConfig(size="64p")
    source = SourceFacts((HEIGHT, WIDTH), 110, Fraction(FPS), Fraction(1, FPS), cuts=(37, 80))
    plan = plan_clip(source, config, CPU)

    def job(second: str) -> RefineJob:
        cues = (CaptionCue(0, 1.6, "a fox"), CaptionCue(1.6, 4.6, second))
        return RefineJob(clip, out, "a fox", Captions("clip.captions.srt", cues))

    assert job("a cabin").shot_captions(plan) == ("a fox", "a cabin", "a cabin")
    keys = {file_job_key(config, j, plan, {}) for j in (job("a cabin"), job("a barn"))}
    keys.add(file_job_key(config, RefineJob(clip, out, "a fox"), plan, {}))
    assert len(keys) == 3
