"""The one table benchmarks/gpu_quick.sh prints last: every stage's rows from OUT/<stage>.json."""

from __future__ import annotations

import json
from pathlib import Path

STAGES = ("env", "conv", "vae", "e2e", "norm", "dit", "tests")
TITLES = {
    "env": "Environment",
    "conv": "One decoder conv (128 -> 128 channels, 9 frames, full resolution)",
    "norm": "Norm + SiLU at full resolution (read and write counted)",
    "vae": "VAE: one 49-frame encode and decode, as a run plans it",
    "dit": "One stage-II DiT pass (batch 2) per attention kernel",
    "e2e": "End to end (benchmarks/refine_gpu.py; its own tables are in the log)",
    "tests": "CUDA tests",
}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value).replace("|", "/")


def stage_table(name: str, rows: list[dict]) -> list[str]:
    """Markdown lines of one stage: columns in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [f"### {TITLES.get(name, name)}", "", "| " + " | ".join(columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return [*lines, ""]


def e2e_rows(out: Path) -> list[dict]:
    """One row per refine_gpu run: seconds per phase (DiT passes summed) and end to end."""
    path = out / "e2e_runs.json"
    if not path.exists():
        return []
    rows = []
    for run in json.loads(path.read_text())["runs"]:
        seconds = run["seconds"]
        dit = sum(v for k, v in seconds.items() if k.startswith("DiT pass"))
        rows.append({
            "path": run["path"], "steps": run["steps"], "T5 s": seconds.get("T5"),
            "VAE encode s": seconds.get("VAE encode"), "DiT total s": dit,
            "VAE decode s": seconds.get("VAE decode"), "end to end s": run["total_s"],
        })  # fmt: skip
    return rows


def print_table(out: Path) -> None:
    """Print every stage found under `out` (a stage that never ran says so)."""
    lines = ["# benchmarks/gpu_quick.sh results", ""]
    for name in STAGES:
        path = out / f"{name}.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        if name == "e2e":
            rows = e2e_rows(out) or rows
        lines += stage_table(name, rows) if rows else [f"### {TITLES[name]}", "", "not run", ""]
    print("\n".join(lines))
