"""Device and dtype policy: where models run and in which precision."""

from __future__ import annotations

import contextlib
import os
import resource
import sys

import torch

from vidrefine.errors import BadInput

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


KINDS = ("cpu", "cuda")  # where vidrefine runs


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """`name` checked, if given; else the first CUDA device, else the CPU.

    Raises:
        BadInput: `name` is not a device, a kind vidrefine does not run on, or a CUDA device
            this machine does not have.
    """
    if name is None or name == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise BadInput(f"device {name!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type not in KINDS:
        raise BadInput(f"device {name!r}: vidrefine runs on 'cpu' or 'cuda' ('cuda:N')")
    if device.type == "cuda":
        _check_cuda(device, name)
    return device


def _check_cuda(device: torch.device, name: object) -> None:
    """BadInput when this machine has no CUDA device of that index."""
    shown = repr(str(name) if isinstance(name, torch.device) else name)
    if not torch.cuda.is_available():
        why = (
            "this torch is built without CUDA"
            if torch.version.cuda is None
            else "no CUDA GPU is usable here (driver, CUDA_VISIBLE_DEVICES)"
        )
        raise BadInput(f"device {shown}: {why}; pass device='cpu'")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise BadInput(
            f"device {shown}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
        )


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
