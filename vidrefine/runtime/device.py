"""Device and dtype policy: where models run and in which precision."""

from __future__ import annotations

import contextlib
import os
import resource
import sys

import torch

from vidrefine.errors import BadInput

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pick_device(name: str | None = None) -> torch.device:
    """`name` if given, else the first CUDA device, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a resolved precision name ("bf16", "fp16", "fp32")."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise BadInput(f"dtype {name!r} is not one of {', '.join(_DTYPES)}") from None


def device_memory(device: torch.device) -> tuple[str, float | None, float]:
    """(name, total memory in GiB or None for the CPU, host memory in GiB) of `device`."""
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024**3
    if device.type != "cuda":
        return "cpu", None, host
    props = torch.cuda.get_device_properties(device)
    return props.name, props.total_memory / 1024**3, host


def autocast_for(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The original's precision: bf16/fp16 weights run under autocast on CUDA (spec §9.4).

    LayerNorms then compute in fp32; on the CPU and in fp32 nothing changes.
    """
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on `device`, or this process's peak RSS on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
