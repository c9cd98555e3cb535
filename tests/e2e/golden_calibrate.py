"""The measurement behind `golden.py`'s tolerances: how far the frame summaries move when only the
CPU kernels change, and how far a real change moves them.

`python tests/e2e/golden_calibrate.py` runs the golden cases in subprocesses, once as they are
and once per variant below: other thread counts and other kernel choices (ATen's vector
capability, oneDNN's and MKL's instruction sets, which is what another CPU changes), then real
changes (another seed, fewer steps, another caption). It prints, per variant and file, the
largest block-mean and frame-bias differences from the plain run, next to the tolerances.
`--cases a,b` limits the upscale cases (the t2v case runs only without it); `--no-changes`
skips the real changes. A run of everything takes about 15 CPU minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

from golden import BIAS_TOLERANCE, BLOCK_TOLERANCE, differences  # noqa: E402
from t5_fixtures import tiny_caption  # noqa: E402

LOWERED = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
}
# name -> (environment, extra CLI arguments of every upscale case)
KERNEL_VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "1 thread": ({"OMP_NUM_THREADS": "1"}, ""),
    "3 threads": ({"OMP_NUM_THREADS": "3"}, ""),
    "ATen default (no AVX)": ({"ATEN_CPU_CAPABILITY": "default"}, ""),
    "oneDNN SSE4.1": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, ""),
    "MKL SSE4.2": ({"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, ""),
    "all three lowered, 1 thread": ({**LOWERED, "OMP_NUM_THREADS": "1"}, ""),
}
REAL_CHANGES: dict[str, tuple[dict[str, str], str]] = {
    "--seed 11": ({}, "--seed 11"),
    "--steps 1": ({}, "--steps 1"),
    "another caption": ({}, f"-c {shlex.quote(tiny_caption(20, seed=5))}"),
}


def dump(cases: str | None, environment: dict[str, str], extra: str, folder: Path) -> dict:
    """The golden record of `cases` run in a fresh process with `environment` added."""
    out = folder / f"run{len(list(folder.iterdir()))}.json"
    command = [sys.executable, str(HERE / "golden.py"), "--dump", str(out), "--extra", extra]
    if cases:
        command += ["--cases", cases]
    env = {k: v for k, v in os.environ.items() if k not in (*LOWERED, "OMP_NUM_THREADS")}
    subprocess.run(command, env={**env, **environment}, check=True, capture_output=True)
    return json.loads(out.read_text())


def report(name: str, base: dict, other: dict) -> None:
    """One line per file: the largest differences of `other` from `base`."""
    for case, files in base["cases"].items():
        for file, record in files.items():
            current = other["cases"][case][file]
            block, bias = differences(record, current)
            same = sum(a == b for a, b in zip(record["sha256"], current["sha256"], strict=True))
            where, frames = f"{case}/{file}", f"{same}/{len(record['sha256'])}"
            sizes = f"block {block:6.2f}  bias {bias:5.2f}"
            print(f"{name:28s} {where:38s} {frames:>5s} bit-equal  {sizes}")


def main() -> None:
    """Run the plain cases, then every variant, and print how far each moved."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated upscale cases (default: all, and t2v)")
    parser.add_argument("--no-changes", action="store_true", help="skip the real changes")
    args = parser.parse_args()
    variants = dict(KERNEL_VARIANTS) | ({} if args.no_changes else REAL_CHANGES)
    print(f"tolerances: block {BLOCK_TOLERANCE}, bias {BIAS_TOLERANCE} levels")
    with tempfile.TemporaryDirectory() as tmp:
        base = dump(args.cases, {}, "", Path(tmp))
        print(f"plain run: {base['cpu']}")
        for name, (environment, extra) in variants.items():
            cases = args.cases
            if extra and not cases:  # the extra arguments are for upscale cases only
                cases = ",".join(c for c in base["cases"] if c != "t2v")
            other = dump(cases, environment, extra, Path(tmp))
            trimmed = {**base, "cases": {c: base["cases"][c] for c in other["cases"]}}
            report(name, trimmed, other)


if __name__ == "__main__":
    main()
