"""The stage-II DiT made trainable: LoRA adapters through peft on the blocks' linear layers (the
two stage-II embeddings trained whole, as peft's `modules_to_save`) or every weight, activation
checkpointing around each block, and the tensors a checkpoint or an adapter file keeps.

Trainable weights are float32 (the master copy; on a GPU the forward pass runs under bf16
autocast, the original's precision), frozen ones stay as loaded (bf16 on a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidrefine.errors import BadInput
from vidrefine.runtime.device import autocast_for
from vidrefine.train.lora import AdapterConfig, weights_fingerprint
from vidrefine.train.loss import reset_stage2_embeddings

# --lora-targets names -> the linear of each block they adapt
TARGETS = {
    "qkv": "attn.qkv",
    "out": "attn.out",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
    "modulation": "modulation",
}
EMBEDDINGS = ("frames_embed", "ref_step_embed")  # stage II's extra MLPs (spec §3.3)


@dataclass(frozen=True)
class ModelSettings:
    """What is trained: LoRA of `rank` on `targets` (alpha defaults to the rank), or all."""

    full: bool = False
    rank: int = 32
    alpha: float | None = None
    targets: tuple[str, ...] = tuple(TARGETS)
    checkpointing: bool = True  # recompute each block in the backward pass
    reset_embeddings: bool = False  # zero the stage-II embeddings first, as the original began

    def __post_init__(self) -> None:
        """Refuse unknown targets and ranks below 1."""
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise BadInput(
                f"--lora-targets {','.join(self.targets)}: use some of {', '.join(TARGETS)}"
            )
        if self.rank < 1:
            raise BadInput(f"--lora-rank {self.rank}: the rank is at least 1")

    @property
    def lora_alpha(self) -> float:
        """Peft's lora_alpha: the update is scaled by alpha / rank."""
        return float(self.alpha if self.alpha is not None else self.rank)


@dataclass
class TrainableDiT:
    """A DiT prepared for training, and what identifies its base model."""

    module: nn.Module
    settings: ModelSettings
    base_fingerprint: str
    adapted: list[str] = field(default_factory=list)  # module names of the LoRA'd linears

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters, in a fixed order (the optimizer's)."""
        return [p for _, p in self.named_parameters()]

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of what trains, sorted by name."""
        return sorted((n, p) for n, p in self.module.named_parameters() if p.requires_grad)

    def adapter_config(self, base_name: str) -> AdapterConfig:
        """The adapter file's config for these settings."""
        return AdapterConfig(
            r=self.settings.rank,
            lora_alpha=self.settings.lora_alpha,
            target_modules=list(self.adapted),
            modules_to_save=list(EMBEDDINGS),
            base_model_fingerprint=self.base_fingerprint,
            base_model_name_or_path=base_name,
        )

    def adapter_pairs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(A (r, in), B (out, r)) of every adapted linear."""
        pairs = {}
        for name in self.adapted:
            layer = self.module.get_submodule(name)
            pairs[name] = (layer.lora_A["default"].weight, layer.lora_B["default"].weight)
        return pairs

    def embedding_tensors(self) -> dict[str, torch.Tensor]:
        """The stage-II embeddings' weights, by their names in the DiT."""
        return {
            f"{name}.{key}": value
            for name in EMBEDDINGS
            for key, value in self.module.get_submodule(name).state_dict().items()
        }


def adapted_names(dit: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Module names of the linears LoRA adapts: `blocks.{l}.<target>` for every block."""
    return [f"blocks.{i}.{TARGETS[t]}" for i in range(len(dit.blocks)) for t in targets]


def checkpoint_blocks(dit: nn.Module) -> None:
    """Recompute each block in the backward pass instead of keeping its activations.

    The blocks' own `forward` is wrapped on the instance, so parameter names (and files) stay
    those of the DiT; non-reentrant checkpointing works under DDP and FSDP2.
    """
    for block in dit.blocks:
        inner = block.forward

        def forward(*args: torch.Tensor, _inner: Callable = inner) -> tuple[torch.Tensor, ...]:
            return checkpoint(_inner, *args, use_reentrant=False)

        block.forward = forward


def seed_adapters(dit: nn.Module, names: list[str], seed: int) -> None:
    """Draw each lora_A as peft does (Kaiming uniform, a = sqrt 5) from the run's seed.

    peft draws from torch's global generator; seeding from the run makes one process and every
    torchrun layout start from the same adapters. lora_B stays zero: the start is the base.
    """
    for number, name in enumerate(names):
        weight = dit.get_submodule(name).lora_A["default"].weight
        generator = torch.Generator().manual_seed(seed * 100_003 + number)
        with torch.no_grad():
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)


def make_trainable(dit: nn.Module, settings: ModelSettings, *, seed: int = 0) -> TrainableDiT:
    """Prepare a loaded stage-II DiT for training, in place (see the module docstring)."""
    if getattr(dit, "frames_embed", None) is None:
        raise BadInput("tune trains stage II: this DiT has no stage-II embeddings (a stage-I one?)")
    fingerprint = weights_fingerprint(dit)  # of the base as loaded: adapters apply to it
    if settings.reset_embeddings:
        reset_stage2_embeddings(dit)
    adapted: list[str] = []
    if settings.full:
        dit.requires_grad_(True)
    else:
        from peft import LoraConfig, inject_adapter_in_model

        dit.requires_grad_(False)
        adapted = adapted_names(dit, settings.targets)
        config = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.lora_alpha,
            target_modules=adapted,
            lora_dropout=0.0,
            bias="none",
        )
        inject_adapter_in_model(config, dit)
        seed_adapters(dit, adapted, seed)
        for name in EMBEDDINGS:
            dit.get_submodule(name).requires_grad_(True)
    for parameter in dit.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()  # the fp32 master weights
    if settings.checkpointing:
        checkpoint_blocks(dit)
    return TrainableDiT(dit, settings, fingerprint, adapted)


def velocity_of(dit: nn.Module, device: torch.device, dtype: torch.dtype) -> Callable:
    """The DiT as the loss's velocity(x_t, timestep, context, frames, ref_step), under the
    precision `upscale` runs it in (bf16 autocast on a GPU, plain fp32 on the CPU).
    """

    def velocity(x, index, context, frames, ref_step):  # noqa: ANN001, ANN202
        with autocast_for(device, dtype):
            return dit(x, index, context, num_frames=frames, ref_step=ref_step)

    return velocity
