"""Training memory, planned before any weight is read: a run that cannot fit stops (exit 6).

Terms (GiB, as `upscale`'s planner, plan/memory.py, whose parameter counts it uses):
  * weights: the frozen base (bf16 on a GPU, fp32 on the CPU); a full fine-tune keeps fp32
    master weights, their gradients and AdamW's two moments instead, 16 bytes a parameter,
    split over the ranks under FSDP (plus one gathered block); LoRA keeps those 16 bytes for
    its adapters and the two stage-II embeddings only;
  * activations per token of the longest window and hidden channel: a fixed part (embeddings,
    head, loss), one block's forward and backward, and with activation checkpointing the input
    each block keeps, instead of every block's activations. Measured on the CPU in fp32 with
    `LiveTensorMemory` (tests/train/test_memory.py re-measures them); the bf16-autocast figures
    are planned from them (about two thirds), not measured on a GPU;
  * runtime: CUDA context and allocator slack, a flat 1 GiB on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidrefine.config import DiTConfig
from vidrefine.errors import DoesNotFit
from vidrefine.plan.memory import GB, RUNTIME_GB, dit_block_params, dit_param_count
from vidrefine.train.model import TARGETS, ModelSettings

# bytes per token per hidden channel: (fixed, one block forward + backward, kept per block)
ACTIVATION_BYTES = {"fp32": (30, 93, 4), "autocast": (20, 62, 2)}
ADAM_BYTES = 16  # fp32 weight, gradient, two moments


def lora_param_count(cfg: DiTConfig, settings: ModelSettings) -> int:
    """Adapter parameters (rank x (in + out) per adapted linear) and the two embeddings."""
    d, inner, e = cfg.hidden_size, cfg.mlp_ratio * cfg.hidden_size, cfg.time_embed_dim
    shapes = {"qkv": (d, 3 * d), "out": (d, d), "fc1": (d, inner), "fc2": (inner, d)}
    shapes["modulation"] = (e, 12 * d)
    per_block = sum(settings.rank * sum(shapes[t]) for t in settings.targets if t in TARGETS)
    embeddings = 2 * (d * e + e + e * e + e)
    return cfg.num_layers * per_block + embeddings


@dataclass(frozen=True)
class TrainingMemory:
    """Planned GiB per part for one rank, against the budget (None: not limited)."""

    parts_gb: dict[str, float]
    budget_gb: float | None
    tokens: int

    @property
    def total_gb(self) -> float:
        """Everything one rank holds at its peak."""
        return sum(self.parts_gb.values())

    def line(self) -> str:
        """One log line for the start of a run."""
        parts = ", ".join(f"{name} {gb:.2f}" for name, gb in self.parts_gb.items())
        budget = f" of {self.budget_gb:.1f}" if self.budget_gb is not None else ""
        return f"{self.tokens:,} tokens a window: {self.total_gb:.2f} GB{budget} ({parts})"


def activation_gb(cfg: DiTConfig, tokens: int, *, autocast: bool, checkpointing: bool) -> float:
    """Working memory of one training forward and backward over `tokens` tokens."""
    fixed, block, kept = ACTIVATION_BYTES["autocast" if autocast else "fp32"]
    layers = cfg.num_layers
    per_channel = fixed + (block + kept * layers if checkpointing else block * layers)
    return per_channel * tokens * cfg.hidden_size / GB


def plan_training_memory(
    cfg: DiTConfig,
    tokens: int,
    settings: ModelSettings,
    *,
    device_kind: str,
    world_size: int = 1,
    budget_gb: float | None = None,
) -> TrainingMemory:
    """The plan of one rank; DoesNotFit when it needs more than `budget_gb`.

    Full fine-tuning across ranks shards weights, gradients and optimizer (FSDP2); LoRA runs
    replicate the model (DDP).
    """
    gpu = device_kind == "cuda"
    params = dit_param_count(cfg)
    parts: dict[str, float] = {}
    if settings.full:
        shards = world_size if world_size > 1 else 1
        parts["weights, gradients, AdamW"] = params * ADAM_BYTES / shards / GB
        if shards > 1:
            parts["gathered blocks"] = 2 * dit_block_params(cfg) * 4 / GB
    else:
        parts["base weights"] = params * (2 if gpu else 4) / GB
        parts["adapters, gradients, AdamW"] = lora_param_count(cfg, settings) * ADAM_BYTES / GB
    parts["activations"] = activation_gb(
        cfg, tokens, autocast=gpu, checkpointing=settings.checkpointing
    )
    if gpu:
        parts["runtime"] = RUNTIME_GB
    plan = TrainingMemory(parts, budget_gb, tokens)
    if budget_gb is not None and plan.total_gb > budget_gb:
        biggest = max(parts, key=parts.get)
        advice = "activation checkpointing, " if not settings.checkpointing else ""
        raise DoesNotFit(
            f"training needs {plan.total_gb:.1f} GB a rank, more than the {budget_gb:.1f} GB "
            f"budget (most of it {biggest}: {parts[biggest]:.1f} GB); try {advice}LoRA instead "
            "of --full, a smaller --size or --frames in tune prepare, or more ranks (torchrun)"
        )
    return plan
