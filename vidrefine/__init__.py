"""vidrefine: FlashVideo's stage-II flow refiner as a tool (low-res clip -> 1080p, audio kept).

Heavy modules (torch, av) are imported lazily, so `import vidrefine` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "VidrefineError": "vidrefine.errors",
    "BadInput": "vidrefine.errors",
    "MissingWeights": "vidrefine.errors",
    "RunConfig": "vidrefine.config",
    "probe": "vidrefine.io.probe",
    "MediaInfo": "vidrefine.io.probe",
    "read_chunks": "vidrefine.io.reader",
    "VideoWriter": "vidrefine.io.writer",
    "load_vae": "vidrefine.checkpoints",
    "load_dit": "vidrefine.checkpoints",
    "load_config": "vidrefine.presets",
    "Refiner": "vidrefine.pipeline.api",
    "RefineJob": "vidrefine.pipeline.refine",
    "JobResult": "vidrefine.pipeline.refine",
    "JobFailure": "vidrefine.pipeline.batch",
    "refine_files": "vidrefine.pipeline.batch",
    "ClipPlan": "vidrefine.plan.clip",
    "generate_videos": "vidrefine.pipeline.t2v",
    "caption_for_preview": "vidrefine.pipeline.t2v_manifest",
    "write_tiny_weights": "vidrefine.pipeline.selftest",
    "write_test_clip": "vidrefine.pipeline.selftest",
    "plan_clip": "vidrefine.plan.clip",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vidrefine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
