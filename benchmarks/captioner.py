"""Captioning benchmark: what `vidrefine caption` (and `upscale --caption auto`) costs per shot.

Run from the repository root:

    python3 benchmarks/captioner.py                    # CPU: tiny random Qwen3-VL + tiny T5
    python3 benchmarks/captioner.py --weights DIR      # the real Qwen3-VL-2B and T5 (a GPU)

It captions a synthetic two-shot clip through the real path (`CaptionSession`: shot frames read
and sampled, packed, generated greedily, decoded, trimmed to 226 T5 tokens) and prints the load
time, then per shot the seconds spent in the model, the answer's length in the model's tokens
(re-tokenized), and the T5 tokens kept after trimming.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.captioner_fixtures import make_cut_clip, make_tiny_qwen3vl  # noqa: E402
from tests.t5_fixtures import make_tiny_t5  # noqa: E402
from vidrefine.captioners.clip import MAX_NEW_TOKENS, CaptionSession  # noqa: E402
from vidrefine.checkpoints.weights import CAPTIONER, T5  # noqa: E402
from vidrefine.plan.shots import Shot  # noqa: E402


class Clocked:
    """A captioner whose `caption` calls are timed (and their answers' lengths kept)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds: list[float] = []
        self.answers: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def caption(self, frames, fps, *, max_tokens):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        answer = self.inner.caption(frames, fps, max_tokens=max_tokens)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - start)
        self.answers.append(answer)
        return answer


def tiny_weights(folder: Path) -> Path:
    """A weights folder with a tiny T5 and a tiny random Qwen3-VL (tests' fixtures)."""
    make_tiny_t5(folder / T5.name)
    make_tiny_qwen3vl(folder / CAPTIONER.name)
    return folder


def run(weights: Path, work: Path, seconds_per_shot: float, size_hw: tuple[int, int]) -> dict:
    """Caption a two-shot clip; returns the measured figures."""
    fps = 24
    shot_frames = round(seconds_per_shot * fps)
    clip = make_cut_clip(
        work / "clip.mp4", frames=2 * shot_frames, cut=shot_frames, fps=fps, size_hw=size_hw
    )
    shots = [
        Shot(0, shot_frames, 0.0, seconds_per_shot),
        Shot(shot_frames, 2 * shot_frames, seconds_per_shot, 2 * seconds_per_shot),
    ]
    start = time.perf_counter()
    session = CaptionSession.open(weights_dir=weights, offline=True)
    load_s = time.perf_counter() - start
    session.captioner = clocked = Clocked(session.captioner)
    start = time.perf_counter()
    cues = session.caption_clip(clip, shots)
    total_s = time.perf_counter() - start
    session.close()
    tokenizer = clocked.inner._tokenizer
    return {
        "device": str(clocked.inner.device),
        "load_s": load_s,
        "shots": len(cues),
        "model_s": clocked.seconds,
        "other_s": total_s - sum(clocked.seconds),
        "tokens": [len(tokenizer(a)["input_ids"]) for a in clocked.answers],
        "t5_tokens": [session.count_tokens(c.text) for c in cues],
        "max_new_tokens": MAX_NEW_TOKENS,
    }


def print_table(result: dict, what: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"captioning, {what}, {result['device']}")
    for column in ("shot", "model s", "answer tokens", "tokens/s", "T5 tokens kept"):
        table.add_column(column, justify="right")
    rows = zip(result["model_s"], result["tokens"], result["t5_tokens"], strict=True)
    for number, (seconds, tokens, kept) in enumerate(rows, start=1):
        table.add_row(
            str(number), f"{seconds:.2f}", str(tokens), f"{tokens / seconds:.1f}", str(kept)
        )
    console = Console(width=120, highlight=False)
    console.print(table)
    console.print(
        f"load {result['load_s']:.2f} s; reading, sampling and trimming {result['other_s']:.2f} s "
        f"for {result['shots']} shots"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="real weights folder [tiny random models]")
    parser.add_argument("--shot-seconds", type=float, default=4.0)
    parser.add_argument("--size", default="480x270", help="clip WIDTHxHEIGHT")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = args.weights or tiny_weights(work / "weights")
        result = run(weights, work, args.shot_seconds, (height, width))
    what = "Qwen3-VL-2B" if args.weights else "tiny random Qwen3-VL"
    print_table(result, what)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
