"""Training across torchrun's ranks: DDP for LoRA, FSDP2 `fully_shard` for full fine-tuning,
gathered checkpoints, and the few values the ranks agree on each step. In one process every
helper is a no-op that returns its input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from vidrefine.runtime.distributed import RankInfo
from vidrefine.train.model import TrainableDiT


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wrap_for_ranks(trainable: TrainableDiT, place: RankInfo, device: torch.device) -> Any:
    """The module the steps call: DDP (LoRA) or FSDP2 shards (full) under torchrun, else as is."""
    module = trainable.module
    if not place.distributed:
        return module
    if trainable.settings.full:
        from torch.distributed.fsdp import fully_shard

        for block in module.blocks:
            fully_shard(block)
        return fully_shard(module)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def state_of(model: Any, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full (gathered) trainable weights and optimizer state, on the CPU (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_state_dict(model, optimizer, options=options)


def restore(model: Any, optimizer: torch.optim.Optimizer, weights: dict, saved: dict) -> None:
    """Load a checkpoint's weights and optimizer state into the (wrapped) model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_state_dict(
        model, optimizer, model_state_dict=weights, optim_state_dict=saved, options=options
    )


def all_mean(value: float, device: torch.device) -> float:
    """The mean of `value` over the ranks (itself in one process)."""
    if not _distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor) / dist.get_world_size()


def all_steps(steps: list[int], device: torch.device) -> list[int]:
    """Every rank's drawn degradation steps, in slot order."""
    if not _distributed():
        return steps
    gathered: list[list[int]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, steps)
    return [s for part in gathered for s in part]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is True on any (so every rank stops at one step)."""
    if not _distributed():
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
