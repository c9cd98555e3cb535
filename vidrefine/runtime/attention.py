"""Which scaled-dot-product-attention kernel runs, chosen and observed (issue 7 fast paths).

`attention_kernels(device, choice)` restricts or orders torch's SDPA backends for a block of code,
or (issue 21) routes torch's SDPA calls to an installed external kernel: "flash_attn"
(FlashAttention 3's `flash_attn_interface` when importable, else FlashAttention 2's `flash_attn`)
or the opt-in "int8" (SageAttention 2: 8-bit QK^T; docs/performance.md "Attention").
`observe_attention_kernel(fn)` runs `fn` and reports the kernel torch actually dispatched to, so
the run log says "flash" or "cudnn" from what happened, not from what was asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from vidrefine.config import ATTENTION_KERNELS
from vidrefine.errors import BadInput

CHOICES = ATTENTION_KERNELS

# aten operator name fragment -> kernel name shown to users
_KERNEL_OPS = (
    ("flash_attn_3", "flash-attn 3"),
    ("flash_attn", "flash-attn"),
    ("sageattn", "int8 (SageAttention)"),
    ("qk_int8", "int8 (SageAttention)"),
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
    "flash_attn"/"int8" route every plain SDPA call to that package's kernel; they need CUDA
    and the package, and say so (BadInput) when either is missing.
    """
    if choice in EXTERNAL:
        return route_attention(external_kernel(choice, device))
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


EXTERNAL = ("flash_attn", "int8")
_SAGE_MAJOR = 2  # PyPI's sageattention 1.x is version 1: slower than FlashAttention 3 on Hopper


def _flash_attn_kernel() -> Callable | None:
    """FlashAttention 3 (`flash_attn_interface`) or 2 (`flash_attn`) in SDPA's layout, or None."""
    for module in ("flash_attn_interface", "flash_attn"):
        try:
            fn = importlib.import_module(module).flash_attn_func
        except (ImportError, AttributeError):
            continue

        def kernel(q, k, v, fn=fn):
            out = fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            out = out[0] if isinstance(out, tuple) else out  # some FA3 builds return (out, lse)
            return out.transpose(1, 2)  # (B, S, heads, d) -> (B, heads, S, d), a view

        return kernel
    return None


def _sage_kernel() -> Callable | None:
    """SageAttention 2's `sageattn` (HND layout: q, k, v as SDPA takes them), or None."""
    try:
        version = importlib.metadata.version("sageattention")
        sageattn = importlib.import_module("sageattention").sageattn
    except (ImportError, AttributeError, importlib.metadata.PackageNotFoundError):
        return None
    if int(version.split(".")[0]) < _SAGE_MAJOR:
        raise BadInput(
            f"attention = 'int8' needs SageAttention 2; sageattention {version} is version 1 "
            "(slower than FlashAttention 3 on Hopper): build SageAttention 2 from "
            "github.com/thu-ml/SageAttention, or use attention = 'cudnn'"
        )
    return lambda q, k, v: sageattn(q, k, v, tensor_layout="HND", is_causal=False)


_INSTALL = {
    "flash_attn": "the flash-attn package (FlashAttention 2: pip install flash-attn) or "
    "FlashAttention 3's flash_attn_interface (built from hopper/ of Dao-AILab/flash-attention)",
    "int8": "SageAttention 2 (built from github.com/thu-ml/SageAttention)",
}


def external_kernel(choice: str, device: torch.device) -> Callable:
    """The installed kernel for `choice` ("flash_attn" or "int8"), or BadInput saying why not.

    Check it before the expensive work: the CLI can call this once when the run starts.
    """
    if device.type != "cuda":
        raise BadInput(f"attention = {choice!r} needs a CUDA device; this run is on {device}")
    kernel = _flash_attn_kernel() if choice == "flash_attn" else _sage_kernel()
    if kernel is None:
        raise BadInput(
            f"attention = {choice!r} needs {_INSTALL[choice]}, which is not installed; "
            "or use attention = 'cudnn'"
        )
    return kernel


def _routable(args: tuple, kwargs: dict) -> bool:
    """An SDPA call an external kernel computes alike: q, k, v only, CUDA half precision."""
    if len(args) != 3 or any(kwargs.get(k) for k in ("attn_mask", "is_causal", "scale")):
        return False
    if kwargs.get("dropout_p", 0.0) or kwargs.get("enable_gqa"):
        return False
    q = args[0]
    return q.is_cuda and q.ndim == 4 and q.dtype in (torch.bfloat16, torch.float16)


class _RouteAttention(TorchFunctionMode):
    """Sends plain scaled_dot_product_attention calls to `kernel`; counts them in `routed`."""

    def __init__(self, kernel: Callable, accept: Callable[[tuple, dict], bool]) -> None:
        super().__init__()
        self.kernel, self.accept, self.routed = kernel, accept, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and self.accept(args, kwargs):
            self.routed += 1
            return self.kernel(*args)
        return func(*args, **kwargs)


def route_attention(
    kernel: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    accept: Callable[[tuple, dict], bool] = _routable,
) -> _RouteAttention:
    """A context manager under which `accept`ed SDPA calls (q, k, v: (B, heads, S, d)) run
    `kernel` instead; any other call (a mask, the CPU, fp32) runs torch's own. The models keep
    calling torch's SDPA, so nothing in them changes.
    """
    return _RouteAttention(kernel, accept)
