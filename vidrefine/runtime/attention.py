"""Which scaled-dot-product-attention kernel runs, chosen and observed (issue 7 fast paths).

`attention_kernels(device, choice)` restricts or orders torch's SDPA backends for a block of code;
`observe_attention_kernel(fn)` runs `fn` and reports the kernel torch actually dispatched to, so
the run log says "flash" or "cudnn" from what happened, not from what was asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vidrefine.config import ATTENTION_KERNELS
from vidrefine.errors import BadInput

CHOICES = ATTENTION_KERNELS

# aten operator name fragment -> kernel name shown to users
_KERNEL_OPS = (
    ("_scaled_dot_product_flash_attention_for_cpu", "flash (cpu)"),
    ("_scaled_dot_product_cudnn_attention", "cudnn"),
    ("_scaled_dot_product_flash_attention", "flash"),
    ("_scaled_dot_product_efficient_attention", "efficient"),
    ("_scaled_dot_product_fused_attention_overrideable", "fused (backend)"),
)


def _backends(choice: str) -> list:
    from torch.nn.attention import SDPBackend

    order = {
        "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION],
        "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION],
    }.get(choice, [])
    fallbacks = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    if choice == "math":
        return [SDPBackend.MATH]
    if choice == "efficient":
        return fallbacks
    return order + fallbacks


def attention_kernels(
    device: torch.device, choice: str = "auto"
) -> contextlib.AbstractContextManager:
    """Prefer SDPA kernel `choice` on CUDA ("auto" leaves torch's own order).

    "cudnn"/"flash" put that kernel first with the other fused kernels and math as fallbacks,
    so a shape the kernel cannot take still runs. On the CPU torch picks (nothing to choose).
    """
    if choice not in CHOICES:
        raise BadInput(f"attention kernel {choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "auto" or device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    return sdpa_kernel(_backends(choice), set_priority=True)


class _KernelSpy(TorchDispatchMode):
    """Records the attention operators that reach the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.softmax = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if "scaled_dot_product" in name:
            self.seen.append(name)
        elif "_softmax" in name:
            self.softmax = True
        return func(*args, **(kwargs or {}))


def kernel_name(op_names: list[str], saw_softmax: bool) -> str:
    """Name the kernel from the aten operators seen: a fused SDPA op, else "math" (softmax)."""
    for op in op_names:
        for fragment, shown in _KERNEL_OPS:
            if fragment in op:
                return shown
    return "math" if saw_softmax else "none"


def observe_attention_kernel(fn: Callable[[], object]) -> tuple[str, object]:
    """Run `fn()` and return (kernel that ran, fn's result); e.g. ("flash", output)."""
    with _KernelSpy() as spy:
        result = fn()
    return kernel_name(spy.seen, spy.softmax), result
