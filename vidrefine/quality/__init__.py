"""Quality of a refined clip against its input: fidelity, colour drift, temporal stability,
detail, and the colour fixes (docs/quality.md). numpy, scikit-image, OpenCV and matplotlib;
no torch.

    result = compare_clips("in.mp4", "out.mp4")
    write_report(result, "report/")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vidrefine.quality.compare import CompareResult, compare_clips
    from vidrefine.quality.report import write_report

_EXPORTS = {
    "CompareResult": "vidrefine.quality.compare",
    "compare_clips": "vidrefine.quality.compare",
    "write_report": "vidrefine.quality.report",
}


def __getattr__(name: str) -> Any:
    """Import the heavy modules (scikit-image, OpenCV) only when a name is used."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = ["CompareResult", "compare_clips", "write_report"]
