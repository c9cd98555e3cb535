"""Automatic captions: the bundled Qwen3-VL captioner on a tiny random model, captioner plugins
found by entry point, `vidrefine caption` and `upscale --caption auto` (docs/captions.md).
"""

from __future__ import annotations

import importlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from captioner_fixtures import make_cut_clip, make_tiny_qwen3vl
from click.testing import CliRunner

from vidrefine.captioners import create_captioner, discover_captioners
from vidrefine.captioners.clip import CaptionSession, caption_files, sample_indices
from vidrefine.captioners.qwen3vl import PROMPT, VIDEO_TOKEN, VideoSettings, pack_frames
from vidrefine.captioners.trim import one_paragraph, t5_token_counter, trim_to_tokens
from vidrefine.captions import check_cues, read_captions, sidecar_captions
from vidrefine.checkpoints.weights import CAPTIONER, T5
from vidrefine.cli.caption import shot_finder
from vidrefine.config import RunConfig
from vidrefine.errors import DoesNotFit
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.memory import plan_captioner

CUT = 15  # make_cut_clip's hard cut (30 frames at 10 fps)


def run_cli(args: list[str]) -> tuple[int, str]:
    """`vidrefine ARGS` in this process: (exit code, what it wrote to stderr)."""
    from vidrefine.cli import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stderr


@pytest.fixture(scope="module")
def caption_weights(tmp_path_factory, stage2_weights: Path) -> Path:
    """A weights folder with the shared tiny T5 and a tiny Qwen3-VL captioner folder."""
    folder = tmp_path_factory.mktemp("caption-weights")
    (folder / T5.name).symlink_to(stage2_weights / T5.name, target_is_directory=True)
    make_tiny_qwen3vl(folder / CAPTIONER.name, seed=0)
    return folder


@pytest.fixture(scope="module")
def session(caption_weights: Path):
    """The bundled captioner found by its entry point and loaded from the weights folder."""
    opened = CaptionSession.open(
        weights_dir=caption_weights, offline=True, device=torch.device("cpu")
    )
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    return make_cut_clip(tmp_path_factory.mktemp("cut-clip") / "cut.mp4", cut=CUT)


def _frames(count: int = 6) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (count, 48, 64, 3), dtype=np.uint8)


def test_prompt_holds_one_timestamped_token_block_per_step_when_frames_are_packed(session):
    frames = _frames(6)  # 6 frames at 2 fps: 3 two-frame steps at 0.25, 1.25, 2.25 s
    inputs = session.captioner._inputs(frames, 2.0)
    tokenizer = session.captioner._tokenizer
    text = tokenizer.decode(inputs["input_ids"][0])
    t, h, w = inputs["video_grid_thw"][0].tolist()
    assert (t, h, w) == (3, 64 // 16, 64 // 16)  # 48x64 is resized to 64x64 (multiples of 32)
    per_step = h * w // 4
    for time in ("<0.2 seconds>", "<1.2 seconds>", "<2.2 seconds>"):
        assert text.count(time) == 1
    assert text.count(VIDEO_TOKEN) == t * per_step == inputs["pixel_values_videos"].shape[0] // 4
    assert PROMPT in text and text.rstrip().endswith("assistant")
    video_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    assert ((inputs["mm_token_type_ids"] == 2) == (inputs["input_ids"] == video_id)).all()


def test_patches_match_transformers_image_layout_when_a_step_repeats_one_frame():
    from transformers import Qwen2VLImageProcessorPil

    frame = _frames(1)[0, :32, :64]
    settings = VideoSettings()
    ours, grid = pack_frames(np.stack([frame, frame]), settings, (32, 64))  # no resize
    oracle = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, do_resize=False
    )(images=[frame], image_mean=[0.5] * 3, image_std=[0.5] * 3, return_tensors="pt")
    assert grid.tolist() == oracle["image_grid_thw"].tolist() == [[1, 2, 4]]
    torch.testing.assert_close(ours, oracle["pixel_values"].float(), atol=1e-5, rtol=0)


def test_srt_has_one_well_formed_cue_per_shot_when_a_two_shot_clip_is_captioned(
    session, cut_clip, tmp_path
):
    session.max_new_tokens = 4
    target = tmp_path / "cut.captions.srt"
    shots = shot_finder(RunConfig())
    [(path, cues)] = caption_files(session, [cut_clip], shots_for=shots, output=lambda _: target)
    read = read_captions(path)
    assert [(c.start_s, c.end_s) for c in read] == [(0.0, CUT / 10), (CUT / 10, 3.0)]
    assert [c.text for c in read] == [c.text for c in cues]
    assert all(c.text.strip() for c in read)
    assert check_cues(read, 3.0, str(path)) == []  # no gap, no overlap, no empty caption
    assert not list(tmp_path.glob(".*vidrefine-tmp-*"))  # written atomically, nothing left over


def test_caption_is_cut_to_226_t5_tokens_at_a_word_when_the_model_says_more(session):
    class Recording:  # the real captioner, with its raw answers kept for the check
        def __init__(self, inner):
            self.inner, self.answers = inner, []

        def caption(self, frames, fps, *, max_tokens):
            self.answers.append(self.inner.caption(frames, fps, max_tokens=max_tokens))
            return self.answers[-1]

    recording = Recording(session.captioner)
    trimming = CaptionSession(recording, session.count_tokens, max_new_tokens=20)
    caption = trimming.describe(_frames(4), 2.0)
    said = one_paragraph(recording.answers[0])
    assert session.count_tokens(said) > 226  # the model said more than stage II reads
    assert 200 < session.count_tokens(caption) <= 226
    assert said.startswith(caption) and said[len(caption)] == " "


def test_trim_keeps_whole_sentences_when_they_fit(stage2_weights):
    from t5_fixtures import tiny_caption

    count = t5_token_counter(stage2_weights / T5.name)
    sentences = [tiny_caption(12, seed=i).capitalize() + "." for i in range(30)]
    text = " ".join(sentences)
    trimmed = trim_to_tokens(text, count)
    kept = trimmed.count(".")
    assert trimmed == " ".join(sentences[:kept]) and count(trimmed) <= 226
    assert count(" ".join(sentences[: kept + 1])) > 226
    assert trim_to_tokens(sentences[0], count) == sentences[0]


def test_sampling_spreads_frames_over_the_shot_at_the_model_rate_when_shots_differ():
    assert sample_indices(0, 15, 10.0, 2.0, 16) == [0, 7, 14]  # 1.5 s at 2 fps: 3 frames
    assert sample_indices(100, 1100, 25.0, 2.0, 16)[::15] == [100, 1099]  # capped at 16
    assert sample_indices(5, 6, 25.0, 2.0, 16) == [5]  # a one-frame shot
    assert (
        one_paragraph("- A cat.\n\n## Light\n2. **Soft** light.\x00") == "A cat. Light Soft light."
    )


def _plugin_dist(folder: Path, entries: dict[str, str]) -> None:
    """A distribution on sys.path registering `entries` in vidrefine.captioners."""
    (folder / "fakecap.py").write_text(
        "class Fake:\n"
        "    api_version = 1\n"
        "    name = 'fake'\n"
        "    required_weights = ()\n"
        "    frame_rate = 2.0\n"
        "    max_frames = 8\n"
        "    memory_gb = 0.0\n"
        "    def describe(self):\n"
        "        return {'captioner': 'fake'}\n"
        "    def load(self, paths, *, device, dtype):\n"
        "        self.loaded = (dict(paths), str(device), dtype)\n"
        "    def caption(self, frames, fps, *, max_tokens):\n"
        "        return f'- A scene of {len(frames)} frames at {fps:.2f} fps, {frames.dtype}.'\n"
        "    def release(self):\n"
        "        pass\n"
    )
    info = folder / "fakecap-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakecap\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[vidrefine.captioners]\n{lines}")


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> None:
    _plugin_dist(tmp_path, {"fake": "fakecap:Fake", "broken": "fakecap_absent:Nothing"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_captioner_registered_by_entry_point_is_found_and_used_when_named(
    plugins, cut_clip, caption_weights, tmp_path
):
    assert discover_captioners()["fake"].package == "fakecap"
    out = tmp_path / "fake.srt"
    args = ["caption", str(cut_clip), "--captioner", "fake", "-o", str(out)]
    code, output = run_cli([*args, "--weights", str(caption_weights), "--offline"])
    assert code == 0, output
    texts = [cue.text for cue in read_captions(out)]
    # each 1.5 s shot sampled at 2 fps: frames 0, 7, 14 of 10 fps, i.e. 20/14 frames a second
    assert texts == ["A scene of 3 frames at 1.43 fps, uint8."] * 2


def test_broken_or_unknown_captioner_is_one_line_when_named(plugins, cut_clip):
    code, output = run_cli(["caption", str(cut_clip), "--captioner", "broken"])
    assert code == 1 and "cannot be imported" in output and len(output.splitlines()) == 1, output
    code, output = run_cli(["caption", str(cut_clip), "--captioner", "nobody"])
    assert code == 2 and "no captioner named 'nobody'" in output and "qwen3-vl-2b" in output
    assert create_captioner().name == "qwen3-vl-2b"


def test_caption_auto_names_the_folder_and_the_download_when_offline_without_it(
    stage2_weights, cut_clip, tmp_path
):
    out = tmp_path / "out.mp4"
    args = ["upscale", str(cut_clip), "--caption", "auto", "-o", str(out)]
    code, output = run_cli([*args, "--weights", str(stage2_weights), "--offline"])
    assert code == 3, output
    assert len(output.strip().splitlines()) == 1
    assert f"{CAPTIONER.name}/" in output and "vidrefine download --only captioner" in output
    assert not out.exists() and not sidecar_captions(cut_clip).exists()


def test_existing_captions_file_is_kept_when_not_overwriting(cut_clip, tmp_path):
    target = tmp_path / "mine.srt"
    target.write_text("1\n00:00:00,000 --> 00:00:03,000\nMy own words.\n")
    code, output = run_cli(["caption", str(cut_clip), "-o", str(target)])
    assert code == 4 and "--overwrite" in output
    assert read_captions(target)[0].text == "My own words."


def test_caption_auto_is_refused_before_any_weight_when_the_budget_is_too_small(cut_clip, tmp_path):
    out = tmp_path / "out.mp4"
    code, output = run_cli(
        ["upscale", str(cut_clip), "--caption", "auto", "-o", str(out)]
        + ["--vram", "4", "--weights", str(tmp_path), "--offline"]
    )
    assert code == 6 and "the captioner needs 6.0 GB" in output, output
    assert not out.exists() and not sidecar_captions(cut_clip).exists()


def test_captioner_phase_is_planned_and_refused_when_the_gpu_is_too_small():
    gpu = DeviceFacts("cuda", "test", 16.0, 64.0)
    assert plan_captioner(5.0, gpu, None) == 6.0  # + the runtime's 1 GB
    with pytest.raises(DoesNotFit, match="captioner needs 6.0 GB"):
        plan_captioner(5.0, gpu, 4.0)
    assert plan_captioner(5.0, DeviceFacts("cpu", "cpu", None, 16.0), None) == 6.0


def test_plan_counts_the_captioner_phase_when_asked():
    from vidrefine.plan.clip import SourceFacts, plan_clip

    source = SourceFacts((240, 320), 49, Fraction(24), Fraction(1, 24))
    gpu = DeviceFacts("cuda", "test", 24.0, 64.0)
    plain = plan_clip(source, RunConfig(), gpu)
    auto = plan_clip(source, RunConfig(), gpu, captioner_gb=5.0)
    assert "captioner" not in plain.memory.phases_gb
    assert auto.memory.phases_gb["captioner"] == 6.0
    assert json.loads(json.dumps(auto.to_dict()))  # the plan still prints as JSON


def test_caption_auto_captions_each_shot_then_refines_with_those_captions(
    caption_weights, stage2_weights, tiny_preset, cut_clip, tmp_path
):
    clip = tmp_path / "cut.mp4"
    clip.write_bytes(cut_clip.read_bytes())
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("3d-vae.pt", "stage2.pt", T5.name):
        (weights / name).symlink_to(stage2_weights / name)
    (weights / CAPTIONER.name).symlink_to(caption_weights / CAPTIONER.name)
    out = tmp_path / "out.mp4"
    args = ["upscale", str(clip), "--caption", "auto", "-o", str(out), "--size", "64p"]
    args += ["--preset", str(tiny_preset)]
    code, output = run_cli([*args, "--weights", str(weights), "--offline"])
    assert code == 0, output
    cues = read_captions(sidecar_captions(clip))
    assert [(c.start_s, c.end_s) for c in cues] == [(0.0, CUT / 10), (CUT / 10, 3.0)]
    assert all(c.text.strip() for c in cues)
    # the refined job read them: its short-caption warning quotes the first shot's caption
    assert f"('{cues[0].text[:20]}" in output and out.exists()
