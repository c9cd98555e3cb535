"""What the page says about the weights it loaded and about a size too large for the device.

Tiny test weights are told apart from the official files by size (the official files are
gigabytes, `vidrefine download` lists them); on the CPU, a size above about 240p runs for hours
(whatever the weights: the VAE's work grows with the pixels), which the page says before a job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vidrefine.errors import BadInput
from vidrefine.plan.geometry import plan_geometry

TINY_FRACTION = 0.05  # a weight entry under 5% of its official size is a test model
CPU_PIXELS = 432 * 240  # output pixels a CPU refines in minutes, not hours (about 240p)
NOMINAL_HW = (360, 640)  # the 16:9 frame a size is planned for before a clip is chosen


def entry_bytes(path: Path) -> int:
    """Size on disk of a weight file, or of every file of a weight folder."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def human_bytes(size: float) -> str:
    """12500000 -> '12.5 MB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def tiny_entries(paths: Mapping[str, Path], official_gb: Mapping[str, float]) -> list[str]:
    """The entries far smaller than the official files of the same name."""
    return [
        name
        for name, path in paths.items()
        if name in official_gb and entry_bytes(path) < TINY_FRACTION * official_gb[name] * 1e9
    ]


def weights_note(paths: Mapping[str, Path], official_gb: Mapping[str, float]) -> str:
    """One Markdown line: the weights folder, each entry with its size, and whether they are
    tiny test weights.
    """
    if not paths:
        return ""
    folders = ", ".join(f"`{folder}`" for folder in dict.fromkeys(p.parent for p in paths.values()))
    entries = ", ".join(
        f"{name}{'/' * path.is_dir()} ({human_bytes(entry_bytes(path))})"
        for name, path in paths.items()
    )
    line = f"Weights in {folders}: {entries}"
    tiny = tiny_entries(paths, official_gb)
    if tiny:
        official = ", ".join(f"{name} {official_gb[name]:.2f} GB" for name in tiny)
        line += (
            f". **These are tiny test weights**, not the official files ({official}): the "
            "pictures they make are noise, good for trying the page"
        )
    return line


def size_notice(size: str, input_hw: tuple[int, int] | None, device: str) -> str:
    """A warning when `size` is too large to refine on `device` in reasonable time (else "")."""
    try:
        height, width = plan_geometry(input_hw or NOMINAL_HW, size).output_hw
    except BadInput:
        return ""  # a bad size is refused, in one line, when a preview or job is asked
    if device != "cpu" or height * width <= CPU_PIXELS:
        return ""
    return (
        f"⚠ **Size {size.strip()} ({width}x{height}) on the CPU: a whole clip can take "
        "hours**, even with tiny test weights, and the job's line shows its time left only "
        "after its first window. To try the page, choose a small size: 64p to 240p."
    )


__all__ = ["entry_bytes", "human_bytes", "size_notice", "tiny_entries", "weights_note"]
