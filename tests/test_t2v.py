"""`vidrefine t2v` end to end on tiny random weights written in the official formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from t2v_fixtures import (
    TINY_STAGE1_FRAMES,
    TINY_STAGE1_HW,
    register_plugins,
    write_tiny_weights,
    write_toy_plugins,
)
from t5_fixtures import tiny_caption

from vidrefine.cli import cli
from vidrefine.cli.batch import find_caption
from vidrefine.errors import ExitCode
from vidrefine.io.probe import probe
from vidrefine.io.reader import read_chunks
from vidrefine.pipeline.t2v_manifest import MANIFEST_NAME, caption_for_preview

REFINED_HW = (64, 64)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = write_toy_plugins(tmp_path / "site")
    register_plugins(
        tmp_path / "site2", {"tiny-flashvideo": "t2v_fixtures:tiny_stage1"}, dist="vr-tiny"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.syspath_prepend(str(tmp_path / "site2"))
    yield folder
    for name in ("vr_toy_plugin", "vr_broken_plugin"):
        sys.modules.pop(name, None)


def t2v(weights: Path, *args: str):
    base = ["t2v", "--weights", str(weights), "--offline", "--preset", str(weights / "tiny.toml")]
    return CliRunner().invoke(cli, [*base, *args])


def prompt_file(folder: Path, prompts: list[str]) -> Path:
    path = folder / "prompts.txt"
    path.write_text("# tiny prompts\n\n" + "\n".join(prompts) + "\n")
    return path


def frames_of(path: Path) -> np.ndarray:
    return np.concatenate([chunk.frames for chunk in read_chunks(path, 16)])


@pytest.mark.slow
def test_t2v_writes_previews_refined_clips_and_manifest_when_two_prompts_and_two_seeds(
    tmp_path, weights, plugins
):
    prompts = [tiny_caption(12, seed=1), tiny_caption(15, seed=2)]
    out = tmp_path / "out"
    args = ["--prompt-file", str(prompt_file(tmp_path, prompts)), "--seeds", "0,1", "-o", str(out)]
    result = t2v(weights, *args, "--generator", "tiny-flashvideo")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    clips = manifest["clips"]
    assert [(c["prompt_number"], c["seed"]) for c in clips] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for clip in clips:
        preview, refined = out / clip["preview"], out / clip["output"]
        assert preview.name == f"p{clip['prompt_number']:03d}_seed{clip['seed']}_preview.mp4"
        assert clip["prompt"] == prompts[clip["prompt_number"] - 1]
        info, refined_info = probe(preview), probe(refined)
        assert info.display_hw == TINY_STAGE1_HW and info.frame_count == TINY_STAGE1_FRAMES
        assert refined_info.display_hw == REFINED_HW
        assert refined_info.frame_count == TINY_STAGE1_FRAMES
        assert clip["generator"]["settings"]["steps"] == 3
        assert clip["stage2"]["config"]["seed"] == clip["seed"]
        assert set(clip["stage2"]["model_files"]) >= {"stage2.pt", "3d-vae.pt", "t5-v1_1-xxl"}
        assert all(Path(p).exists() for p in clip["stage2"]["model_files"].values())
        assert Path(clip["generator"]["settings"]["model_files"]["stage1"]).exists()
    assert not (out / ".t2v-frames").exists()  # scratch float frames are removed
    seed0, seed1 = frames_of(out / clips[0]["preview"]), frames_of(out / clips[1]["preview"])
    assert np.abs(seed0.astype(int) - seed1.astype(int)).mean() > 1  # seeds differ


@pytest.mark.slow
def test_preview_only_then_upscale_refines_a_preview_when_its_caption_is_in_the_manifest(
    tmp_path, weights, plugins
):
    prompt = tiny_caption(10, seed=4)
    out = tmp_path / "out"
    result = t2v(
        weights,
        "--prompt",
        prompt,
        "--seeds",
        "3",
        "--preview-only",
        "-o",
        str(out),
        "--generator",
        "tiny-flashvideo",
    )
    assert result.exit_code == 0, result.output
    preview = out / "p001_seed3_preview.mp4"
    assert preview.is_file() and sorted(p.name for p in out.glob("*.mp4")) == [preview.name]
    clip = json.loads((out / MANIFEST_NAME).read_text())["clips"][0]
    assert clip["output"] is None and clip["stage2"] is None
    preview.with_suffix(".txt").unlink()  # the manifest alone must give the caption
    assert caption_for_preview(preview) == prompt
    assert find_caption(preview, None, None) == (prompt, str(out / MANIFEST_NAME))
    upscale = [
        "upscale",
        str(preview),
        "--weights",
        str(weights),
        "--offline",
        "--preset",
        str(weights / "tiny.toml"),
    ]
    result = CliRunner().invoke(cli, upscale)
    assert result.exit_code == 0, result.output
    refined = probe(out / "p001_seed3_preview_64x64.mp4")
    assert refined.display_hw == REFINED_HW and refined.frame_count == TINY_STAGE1_FRAMES


def test_registered_toy_plugin_makes_the_previews_when_selected(tmp_path, weights, plugins):
    out = tmp_path / "out"
    result = t2v(
        weights, "--prompt", "ab cd", "--seeds", "0,2", "--preview-only", "-o", str(out),
        "--generator", "toy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # the toy plugin's frames are 40 + 20*seed + U(0, 40): mean 60 + 20*seed
    for seed in (0, 2):
        frames = frames_of(out / f"p001_seed{seed}_preview.mp4")
        assert frames.shape == (9, 16, 24, 3)
        assert abs(frames.mean() - (60 + 20 * seed)) < 4


def test_long_prompt_is_truncated_with_a_warning_saying_so_when_over_226_tokens(
    tmp_path, weights, plugins
):
    out = tmp_path / "out"
    long_prompt = tiny_caption(300, seed=9)
    result = t2v(
        weights, "--prompt", long_prompt, "--preview-only", "-o", str(out), "--generator", "toy"
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "cut to 226" in result.stderr


def test_existing_preview_is_refused_before_any_work_when_not_overwriting(
    tmp_path, weights, plugins
):
    out = tmp_path / "out"
    args = ["--prompt", "ab", "--preview-only", "-o", str(out), "--generator", "toy"]
    assert t2v(weights, *args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    result = t2v(weights, *args)
    assert result.exit_code == ExitCode.OUTPUT_EXISTS
    assert "--overwrite" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert t2v(weights, *args, "--overwrite").exit_code == 0


def test_missing_stage1_weights_name_the_file_when_offline(tmp_path, plugins):
    folder = tmp_path / "empty-weights"
    folder.mkdir()
    result = CliRunner().invoke(
        cli,
        ["t2v", "--prompt", "ab", "--weights", str(folder), "--offline", "-o", str(tmp_path / "o"),
         "--generator", "tiny-flashvideo"],
    )  # fmt: skip
    assert result.exit_code == ExitCode.MISSING_WEIGHTS
    assert "stage1.pt" in result.stderr and "vidrefine download" in result.stderr


def test_streamed_stage_one_makes_the_same_preview_when_offload_is_layer(
    tmp_path, weights, plugins
):
    # The stage-I DiT (5.6 B in the real file) loads on the host and streams its blocks.
    streamed = tmp_path / "streamed.toml"
    streamed.write_text((weights / "tiny.toml").read_text() + '\noffload = "layer"\n')
    from torch.nn.modules.module import register_module_forward_pre_hook

    from vidrefine.models.dit_blocks import DiTBlock

    previews, hooked = [], {}
    for name, preset in (("resident", weights / "tiny.toml"), ("streamed", streamed)):
        seen = hooked[name] = set()  # does each DiT block run with a loader hook in front?
        handle = register_module_forward_pre_hook(
            lambda m, _a, seen=seen: (
                seen.add(bool(m._forward_pre_hooks)) if isinstance(m, DiTBlock) else None
            )
        )
        args = ["--prompt", tiny_caption(6, seed=2), "--seeds", "5", "--preview-only"]
        args += ["-o", str(tmp_path / name), "--generator", "tiny-flashvideo", "--preset"]
        try:
            result = CliRunner().invoke(
                cli, ["t2v", "--weights", str(weights), "--offline", *args, str(preset)]
            )
        finally:
            handle.remove()
        assert result.exit_code == 0, result.output
        assert "plan:" in result.output and "stage I" in result.output  # planned before loading
        previews.append(frames_of(tmp_path / name / "p001_seed5_preview.mp4"))
    assert hooked == {"resident": {False}, "streamed": {True}}
    np.testing.assert_array_equal(previews[0], previews[1])
