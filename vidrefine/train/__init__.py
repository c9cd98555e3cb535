"""Fine-tuning stage II (`vidrefine tune`, docs/training.md): the paper's loss and degradations,
a latent cache, LoRA or full training, checkpoints and adapters.

Nothing here is imported on `import vidrefine`; only the CLI imports this package, and the
pipeline imports `vidrefine.train.lora` alone, to apply a tuned adapter.
"""

from __future__ import annotations

__all__: list[str] = []
