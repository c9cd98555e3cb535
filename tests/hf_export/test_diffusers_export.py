"""`vidrefine export diffusers OUT`: a folder diffusers loads where vidrefine is not importable."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from diffusers_fixtures import CLIP_FRAMES, SEED, SIZE_HW
from tiny_runs import run_cli

from vidrefine.errors import ExitCode

# Run with `python -I -S`: no site-packages .pth files (an editable vidrefine installs its finder
# there) and a finder that refuses vidrefine, however vidrefine happens to be installed.
LOAD = """
import sys
sys.path.extend(sys.argv[1].split(":"))

class NoVidrefine:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "vidrefine":
            raise ModuleNotFoundError("vidrefine is not installed here", name=name)

sys.meta_path.insert(0, NoVidrefine())
try:
    import vidrefine
except ImportError:
    print("vidrefine cannot be imported")
else:
    sys.exit("vidrefine was importable")

import numpy as np
import torch
from diffusers import DiffusionPipeline

folder, clip, out, caption, seed, height, width, frames = sys.argv[2:]
pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
video = np.load(clip)
result = pipe(video=video, prompt=caption, num_inference_steps=2, height=int(height),
              width=int(width), num_frames=int(frames),
              generator=torch.Generator().manual_seed(int(seed)))
np.save(out, result.frames[0])
print(type(pipe).__name__, type(pipe.transformer).__name__, type(pipe.vae).__name__)

from diffusers import AutoModel

model = AutoModel.from_pretrained(folder + "/transformer", trust_remote_code=True)
print("AutoModel:", type(model).__name__)
"""


def one_error_line(text: str) -> bool:
    """The command said one thing: `vidrefine: error: ...` (run_cli repeats stderr), no stack."""
    lines = set(text.strip().splitlines())
    return len(lines) == 1 and lines.pop().startswith("vidrefine: error: ")


@pytest.fixture(scope="module")
def exported(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "flashvideo-diffusers"
    code, text = run_cli(["export", "diffusers", str(out), "--weights", str(tiny_weights)])
    assert code == 0, text
    return out


def test_export_writes_a_diffusers_folder_of_safetensors_when_run(exported: Path) -> None:
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == ["vidrefine_diffusers_pipeline", "FlashVideoRefinePipeline"]
    assert index["vae"] == ["diffusers", "AutoencoderKLCogVideoX"]
    assert index["text_encoder"] == ["transformers", "T5EncoderModel"]
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (exported / part).is_dir()
    weights = {p.relative_to(exported).as_posix() for p in exported.rglob("*.safetensors")}
    assert {
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    } <= weights
    assert not [p for p in exported.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    vae = json.loads((exported / "vae" / "config.json").read_text())
    assert vae["scaling_factor"] == 1.15258426
    code = (exported / "transformer" / "vidrefine_models_dit.py").read_text()
    assert code.endswith(Path("vidrefine/models/dit.py").read_text().split("\n", 1)[1][-200:])
    code = "".join(p.read_text() for p in exported.rglob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+vidrefine\b", code, re.MULTILINE)


def test_exported_folder_gives_the_same_frames_when_vidrefine_cannot_be_imported(
    exported: Path, tmp_path: Path, clip: np.ndarray, caption: str, default_frames: np.ndarray
) -> None:
    np.save(tmp_path / "clip.npy", clip)
    paths = ":".join([*site.getsitepackages(), site.getusersitepackages()])
    height, width = SIZE_HW
    argv = [paths, str(exported), str(tmp_path / "clip.npy"), str(tmp_path / "out.npy")]
    argv += [caption, str(SEED), str(height), str(width), str(CLIP_FRAMES)]
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LOAD, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vidrefine cannot be imported" in done.stdout
    assert (
        "FlashVideoRefinePipeline FlashVideoTransformer3DModel AutoencoderKLCogVideoX"
        in done.stdout
    )
    assert "AutoModel: FlashVideoTransformer3DModel" in done.stdout
    frames = np.load(tmp_path / "out.npy")
    assert frames.shape == default_frames.shape
    difference = np.abs(np.rint(frames * 255) - np.rint(default_frames * 255))
    assert difference.max() <= 1  # the same code; weights read back from safetensors


def test_export_refuses_an_existing_folder_unless_overwrite_and_vidrefine_made_it(
    exported: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(exported, copy)
    args = ["export", "diffusers", str(copy), "--weights", str(tiny_weights)]
    code, text = run_cli(args)
    assert code == ExitCode.OUTPUT_EXISTS
    assert one_error_line(text) and "--overwrite" in text, text
    before = (copy / "vae" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    code, text = run_cli([*args, "--overwrite"])
    assert code == 0, text
    assert (copy / "vae" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns != before
    (copy / "vae" / "notes.txt").write_text("mine")  # someone else's file in it now
    code, text = run_cli([*args, "--overwrite"])
    assert code == ExitCode.OUTPUT_EXISTS and "vae/notes.txt" in text, text
    assert (copy / "vae" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_export_names_the_missing_weights_when_none_are_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, text = run_cli(
        ["export", "diffusers", str(tmp_path / "out"), "--weights", str(tmp_path / "empty")]
    )
    assert code == ExitCode.MISSING_WEIGHTS
    assert text.startswith("vidrefine: error: missing weights 3d-vae.pt, stage2.pt, t5-v1_1-xxl/")
    assert "vidrefine download --only vae,stage2,t5" in text and one_error_line(text)
    assert not (tmp_path / "out").exists()
