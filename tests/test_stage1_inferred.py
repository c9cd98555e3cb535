"""The bundled stage-I plugin reads its DiT's architecture from stage1.pt, as stage II does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from dit_fixtures import official_dit_tensors, write_official
from t2v_fixtures import (
    TINY_STAGE1_FRAMES,
    TINY_STAGE1_HW,
    TINY_STAGE1_STEPS,
    write_tiny_weights,
)
from t5_fixtures import tiny_caption

from generators.flashvideo_stage1 import FlashVideoStage1
from vidrefine.checkpoints import load_dit
from vidrefine.cli import cli
from vidrefine.config import STAGE1_DIT
from vidrefine.errors import BadCheckpoint, ExitCode
from vidrefine.io.probe import probe
from vidrefine.pipeline.t2v_manifest import MANIFEST_NAME


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Tiny official-format weights: a stage1.pt far smaller than FlashVideo's."""
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def default_plugin_at_tiny_size(monkeypatch):
    """The registered `flashvideo-stage1` as its entry point builds it, at a tiny clip size.

    Only the clip geometry and step count shrink (49 frames of 256x480 take minutes on a CPU);
    `dit_config` keeps its default, the official STAGE1_DIT.
    """
    defaults = FlashVideoStage1.__init__.__kwdefaults__
    assert defaults["dit_config"] == STAGE1_DIT
    monkeypatch.setitem(defaults, "size_hw", TINY_STAGE1_HW)
    monkeypatch.setitem(defaults, "num_frames", TINY_STAGE1_FRAMES)
    monkeypatch.setitem(defaults, "steps", TINY_STAGE1_STEPS)


def t2v(weights: Path, out: Path, *extra: str):
    args = ["t2v", "--weights", str(weights), "--offline", "--preset", str(weights / "tiny.toml")]
    args += ["--prompt", tiny_caption(12, seed=1), "--seeds", "0", "-o", str(out), *extra]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def test_default_stage1_plugin_runs_t2v_when_stage1_pt_is_smaller_than_the_official(
    tmp_path, weights, default_plugin_at_tiny_size
):
    out = tmp_path / "out"
    code, text = t2v(weights, out)  # the default generator: flashvideo-stage1
    assert code == 0, text
    clip = json.loads((out / MANIFEST_NAME).read_text())["clips"][0]
    assert clip["generator"]["name"] == "flashvideo-stage1"
    preview = probe(out / clip["preview"])
    assert preview.display_hw == TINY_STAGE1_HW and preview.frame_count == TINY_STAGE1_FRAMES
    assert probe(out / clip["output"]).frame_count == TINY_STAGE1_FRAMES


def test_stage2_file_named_stage1_is_refused_without_contradiction_when_t2v_runs(
    tmp_path, weights, default_plugin_at_tiny_size
):
    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    shutil.copy(weights / "stage2.pt", folder / "stage1.pt")
    code, text = t2v(folder, tmp_path / "out", "--preview-only")
    assert code == ExitCode.BAD_CHECKPOINT, text
    line = " ".join(text.split())
    assert "stage1.pt but holds FlashVideo's stage II DiT" in line
    assert "a stage I DiT is needed" in line and "vidrefine download --only stage1" in line
    assert "(a stage I DiT)" not in line  # what the file is, said once and rightly
    assert "pass stage1.pt" not in line  # it is stage1.pt already


def test_same_stage_of_another_size_is_not_called_the_other_stage_when_a_config_is_required(
    tmp_path,
):
    path = write_official(tmp_path / "stage1.pt", official_dit_tensors(stage2=False))
    with pytest.raises(BadCheckpoint) as caught:
        load_dit(path, STAGE1_DIT)
    message = str(caught.value)
    assert "holds a stage I DiT of another size" in message
    assert "passed where stage I is expected" not in message and "(a stage I DiT)" not in message
