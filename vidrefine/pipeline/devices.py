"""The device a run uses, as the planner sees it (measured once per run)."""

from __future__ import annotations

import torch

from vidrefine.plan.hardware import DeviceFacts
from vidrefine.runtime.device import device_memory, pick_device


def device_facts(device: torch.device | None = None) -> DeviceFacts:
    """Kind, name and memory of `device` (default: the first CUDA device, else the CPU)."""
    device = device or pick_device()
    name, memory_gb, host_gb = device_memory(device)
    return DeviceFacts(device.type, name, memory_gb, host_gb)
