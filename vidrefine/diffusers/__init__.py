"""FlashVideo's stage II as diffusers classes (docs/diffusers.md, issue 23): the transformer,
the flow scheduler and the refine pipeline, plus `vidrefine export diffusers`.

Needs the optional extra `vidrefine[diffusers]`. Nothing else in vidrefine imports this package
(but the CLI's export command), and diffusers is imported only here, lazily: `import vidrefine`
and `import vidrefine.diffusers` stay light until a class is used.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY = {
    "FlashVideoTransformer3DModel": "vidrefine.diffusers.transformer",
    "FlashVideoFlowScheduler": "vidrefine.diffusers.scheduler",
    "FlashVideoRefinePipeline": "vidrefine.diffusers.pipeline",
    "export_diffusers": "vidrefine.diffusers.export",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vidrefine.diffusers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
