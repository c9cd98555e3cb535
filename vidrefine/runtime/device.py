"""Device and dtype policy: where models run and in which precision."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from pathlib import Path

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


def device_memory(device: torch.device) -> tuple[str, float | None, float, float]:
    """(name, total memory in GiB or None for the CPU, host memory in GiB, host memory free
    now in GiB) of `device`.
    """
    host, free = host_memory_gb()
    if device.type != "cuda":
        return "cpu", None, host, free
    props = torch.cuda.get_device_properties(device)
    return props.name, props.total_memory / 1024**3, host, free


def host_memory_gb() -> tuple[float, float]:
    """(total, available) host memory in GiB: the kernel's MemAvailable (what can be had
    without swapping), within this process's cgroup limit when it has one.
    """
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    free = _meminfo_available() or os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    room = _cgroup_room()
    if room is not None:
        total, free = min(total, room[0]), min(free, room[0] - room[1])
    return total / 1024**3, max(0, free) / 1024**3


def _meminfo_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (Linux), else None."""
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
        found = [line.split()[1] for line in lines if line.startswith("MemAvailable:")]
        return int(found[0]) * 1024 if found else None
    except (OSError, ValueError, IndexError):
        return None


_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _cgroup_room() -> tuple[int, int] | None:
    """(limit, usage) in bytes of this process's memory cgroup when it has a limit, else None."""
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text(encoding="ascii").strip()
            usage = int(Path(usage_file).read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            return int(limit), usage
    return None


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
