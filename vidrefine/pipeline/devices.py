"""The device a run uses, as the planner sees it (measured once per run)."""

from __future__ import annotations

import torch

from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.model_sizes import ModelSizes
from vidrefine.runtime.device import device_memory, pick_device


def device_facts(
    device: torch.device | None = None, weights: ModelSizes | None = None
) -> DeviceFacts:
    """Kind, name and memory of `device` (default: the first CUDA device, else the CPU), the
    host's memory now, and `weights`: the sizes of the weight files the run found
    (`pipeline.loading.found_model_sizes`; None: a plan without weights, official sizes).
    """
    device = device or pick_device()
    name, memory_gb, host_gb, free_gb = device_memory(device)
    return DeviceFacts(device.type, name, memory_gb, host_gb, free_gb, weights)
