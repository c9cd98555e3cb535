"""Output fingerprints of end-to-end runs, to show that a refactoring changes no output bit.

`golden_frames.json` beside this file was written by `python tests/e2e/golden.py --write` on the
code before the ClipPlan redesign (issue 11). Each case runs the CLI on seeded tiny weights and a
seeded clip and records a SHA-256 per decoded frame (crf 0, rgb24). The test compares the
current code's fingerprints with the recorded ones when torch, PyAV and numpy are the versions
that wrote them (other versions may round differently, which says nothing about our code).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden_frames.json")

UPSCALE_PRESET = """
crf = 0
steps = 2
window_latent = 4
window_overlap_latent = 2
encoder_preset = "ultrafast"
"""

# case name -> (extra preset lines, extra CLI flags)
UPSCALE_CASES: dict[str, tuple[str, list[str]]] = {
    "default": ('vae_mode = "whole"\n', ["--size", "64p"]),
    "faithful_knobs": (
        'vae_mode = "faithful"\naspect = "stretch"\nfps_mode = "fixed8"\nposterior = "mean"\n'
        'timestep_rounding = "exact"\ncaption_prefix = "medium motion, "\ncfg_scale = 6.0\n',
        ["--size", "96x64"],
    ),
    "blend_tiles": (
        "vae_tile_latent = 8\nvae_tile_overlap_latent = 2\ncfg_batched = false\n",
        ["--size", "128p", "--seed", "7"],
    ),
    "streamed": ('vae_mode = "whole"\noffload = "layer"\n', ["--size", "64p", "--steps", "3"]),
}


def versions() -> dict[str, str]:
    """What the fingerprints depend on besides our code."""
    import av
    import numpy
    import torch

    return {
        "torch": torch.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def frame_hashes(path: Path) -> list[str]:
    """SHA-256 of every decoded rgb24 frame of a video file."""
    import av

    with av.open(str(path)) as container:
        return [
            hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest()[:16]
            for f in container.decode(video=0)
        ]


def upscale_weights(folder: Path) -> Path:
    """The e2e test's tiny official-format stage-II weights."""
    from dit_fixtures import official_dit_tensors, write_official
    from t5_fixtures import TINY_T5_WIDTH, make_tiny_t5
    from vae_fixtures import write_official_vae

    folder.mkdir(parents=True, exist_ok=True)
    write_official_vae(folder / "3d-vae.pt", seed=1, widths=(32, 32, 32, 32))
    write_official(folder / "stage2.pt", official_dit_tensors(text_dim=TINY_T5_WIDTH, seed=2))
    make_tiny_t5(folder / "t5-v1_1-xxl")
    return folder


def run_upscale_cases(work: Path, invoke: Callable[[list[str]], tuple[int, str]]) -> dict:
    """Fingerprints of every upscale case; `invoke` runs the CLI and returns (code, output)."""
    from t5_fixtures import tiny_caption

    from tests.media import make_clip

    weights = upscale_weights(work / "weights")
    clip = make_clip(
        work / "in.mp4", frames=20, size_hw=(48, 64), audio=True, fps=Fraction(24), vfr=True
    )
    results = {}
    for name, (lines, flags) in UPSCALE_CASES.items():
        preset = work / f"{name}.toml"
        preset.write_text(UPSCALE_PRESET + lines)
        out = work / f"{name}.mp4"
        args = [str(clip.path), "-c", tiny_caption(20), "-o", str(out), "--weights", str(weights)]
        code, text = invoke(["upscale", *args, "--preset", str(preset), *flags])
        if code != 0:
            raise AssertionError(f"case {name} failed: {text}")
        results[name] = frame_hashes(out)
    return results


def run_t2v_case(work: Path, invoke: Callable[[list[str]], tuple[int, str]]) -> dict:
    """Fingerprints of a preview and its refined clip from the tiny bundled stage-I plugin."""
    from t2v_fixtures import register_plugins, write_tiny_weights
    from t5_fixtures import tiny_caption

    weights = write_tiny_weights(work / "t2v-weights")
    site = register_plugins(work / "site", {"tiny-flashvideo": "t2v_fixtures:tiny_stage1"})
    sys.path.insert(0, str(site))
    try:
        out = work / "t2v"
        base = ["t2v", "--weights", str(weights), "--offline", "--preset"]
        args = [*base, str(weights / "tiny.toml"), "--prompt", tiny_caption(12, seed=1)]
        args += ["--seeds", "0", "-o", str(out), "--generator", "tiny-flashvideo"]
        code, text = invoke(args)
    finally:
        sys.path.remove(str(site))
    if code != 0:
        raise AssertionError(f"t2v case failed: {text}")
    return {p.name: frame_hashes(p) for p in sorted(out.glob("*.mp4"))}


def cli_invoke(args: list[str]) -> tuple[int, str]:
    """Run `vidrefine ARGS` in this process."""
    from click.testing import CliRunner

    from vidrefine.cli import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def main() -> None:
    """`--write`: record the fingerprints of the code as it is now."""
    import tempfile

    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root / "tests"), str(root)]
    with tempfile.TemporaryDirectory() as tmp:
        cases = run_upscale_cases(Path(tmp), cli_invoke)
        cases["t2v"] = run_t2v_case(Path(tmp), cli_invoke)
    record = {"versions": versions(), "cases": cases}
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
