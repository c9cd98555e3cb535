"""How the VAE's convolutions run (issue 21): one math, several ways to compute it.

A causal k x 3 x 3 convolution over time-padded frames P = head ++ x (head: the k-1 frames
before x, spec §6.1) can run as one `F.conv3d` (the default: the original's numbers), as k
`F.conv2d` calls over time-shifted views summed into one output ("conv2d_sum": frames in the
batch dimension, cuDNN's 2D kernels), and either way in time chunks so that no single call's
input exceeds `max_elements` (the causal halo comes from the neighbouring frames, as the
original's `SafeConv3d` does, spec §6.1). Which is fastest depends on the device, the layout
(NCDHW or channels-last NDHWC) and the shapes, so `VAEKernels` says how a pass runs them; the
runtime may measure and pick per layer (`VAEKernels.measure`). Models stay pure math: they call
what they are handed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("conv3d", "conv2d_sum")
MEASURED = "measured"  # VAEKernels.conv: pick a method per layer shape with `measure`
PROBE_FRAMES = 2  # frames of the input a measured choice times each method on

# (key, {method: run}) -> the fastest method's name; the runtime's FastestChoice is one
Measure = Callable[[tuple, Mapping[str, Callable[[], torch.Tensor]]], str]
Wrap = Callable[[Callable], Callable]  # e.g. torch.compile, applied to the fused norm functions


@dataclass(frozen=True)
class VAEKernels:
    """How one VAE pass runs its heavy operators; the default is the plain eager path.

    `conv` is a method of `METHODS` for every convolution, or `MEASURED` (then `measure` picks
    per layer shape, once). `max_elements` caps one conv call's input (0: never split). `fuse`,
    when set, wraps the fused GroupNorm(+SpatialNorm)+SiLU functions (`vae_blocks`), e.g. with
    `torch.compile`; None runs norm and SiLU as separate eager operators.
    """

    conv: str = "conv3d"
    max_elements: int = 0
    measure: Measure | None = None
    fuse: Wrap | None = None

    def __post_init__(self) -> None:
        """Refuse a method that does not exist, or measuring without a measure."""
        if self.conv not in (*METHODS, MEASURED):
            raise ValueError(f"conv method {self.conv!r} is not one of {', '.join(METHODS)}")
        if self.conv == MEASURED and self.measure is None:
            raise ValueError("a measured conv choice needs a `measure` callable")


PLAIN = VAEKernels()


def layout_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d for an NDHWC tensor, else contiguous_format (NCDHW)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.contiguous_format
    return torch.channels_last_3d


def time_window(head: torch.Tensor | None, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Frames [start, stop) of P = head ++ x along time: a view of x where P is x, else one
    copy into a buffer in x's layout (NDHWC stays NDHWC; `torch.cat` would not keep it).
    """
    before = 0 if head is None else head.shape[2]
    if start >= before:
        return x[:, :, start - before : stop - before]
    shape = (*x.shape[:2], stop - start, *x.shape[3:])
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout_of(x))
    from_head = min(stop, before) - start
    out[:, :, :from_head] = head[:, :, start : start + from_head]
    if stop > before:
        out[:, :, from_head:] = x[:, :, : stop - before]
    return out


def tail_frames(head: torch.Tensor, x: torch.Tensor, count: int) -> torch.Tensor:
    """The last `count` frames of P = head ++ x, as a fresh tensor (the next chunk's cache)."""
    frames = x.shape[2]
    if frames >= count:
        return x[:, :, frames - count :].clone()  # a view would keep all of x alive
    return time_window(head, x, frames, frames + count).clone()


def _conv3d(conv: nn.Conv3d, head, x, start: int, stop: int) -> torch.Tensor:
    """Output frames [start, stop) by one F.conv3d over their time window of P."""
    k = conv.kernel_size[0]
    window = time_window(head, x, start, stop + k - 1)
    return F.conv3d(window, conv.weight, conv.bias, padding=(0, *conv.padding[1:]))


def _frames(x: torch.Tensor | None) -> torch.Tensor | None:
    """One sample (C, T, H, W) as frames (T, C, H, W): a view in NDHWC, else one copy."""
    if x is None:
        return None
    frames = x.transpose(0, 1)
    if frames.is_contiguous(memory_format=torch.channels_last):
        return frames
    return frames.contiguous()


def _tap_sum(conv: nn.Conv3d, head, x, start: int, stop: int) -> torch.Tensor:
    """Output frames [start, stop) of one sample's frames (T, C, H, W) -> (n, C', H, W): the
    sum over the k time taps of a 2D conv; tap i of output t reads P[t + i], which is
    x[t + i - (k - 1)], or the head before x. The newest tap (and the bias) goes first.
    """
    k, pad, weight = conv.kernel_size[0], conv.padding[1:], conv.weight
    out = F.conv2d(x[start:stop], weight[:, :, k - 1], conv.bias, padding=pad)
    for tap in range(k - 1):
        lag = k - 1 - tap  # output t reads x[t - lag]
        first = max(start, lag)
        if first < stop:
            part = x[first - lag : stop - lag]
            out[first - start :] += F.conv2d(part, weight[:, :, tap], padding=pad)
        last = min(stop, lag)
        if start < last:
            part = head[start + tap : last + tap]
            out[: last - start] += F.conv2d(part, weight[:, :, tap], padding=pad)
    return out


def _conv2d_sum(conv: nn.Conv3d, frames: list, start: int, stop: int) -> torch.Tensor:
    """Output frames [start, stop) (B, C', n, H, W) from each sample's (head, x) frames."""
    samples = [_tap_sum(conv, head, x, start, stop) for head, x in frames]
    out = torch.stack(samples) if len(samples) > 1 else samples[0].unsqueeze(0)
    return out.transpose(1, 2)  # (B, n, C', H, W) -> (B, C', n, H, W), a view


def _runner(method: str, conv: nn.Conv3d, x: torch.Tensor, head: torch.Tensor | None):
    """A function (start, stop) -> output frames; conv2d_sum lays out the frames once."""
    if method == "conv3d":
        return lambda start, stop: _conv3d(conv, head, x, start, stop)
    if method != "conv2d_sum":
        raise ValueError(f"conv method {method!r} is not one of {', '.join(METHODS)}")
    heads = [None] * x.shape[0] if head is None else list(head)
    frames = [(_frames(h), _frames(xb)) for h, xb in zip(heads, x, strict=True)]
    return lambda start, stop: _conv2d_sum(conv, frames, start, stop)


def causal_conv(
    conv: nn.Conv3d, x: torch.Tensor, head: torch.Tensor | None, method: str, max_elements: int
) -> torch.Tensor:
    """`conv` over P = head ++ x with no time padding: (B, C, T, H, W) -> (B, C', T, H, W).

    `head` holds the k-1 frames before x (None for k = 1); space is padded as `conv` says.
    With `max_elements`, calls go in time chunks whose input (halo included) holds at most
    that many elements (one frame at least); the result comes back in x's layout.
    """
    k, frames = conv.kernel_size[0], x.shape[2]
    step = frames
    if max_elements:
        per_frame = max(1, x.numel() // max(frames, 1))
        step = max(1, max_elements // per_frame - (k - 1))
    run = _runner(method, conv, x, head)
    if step >= frames:
        return run(0, frames).contiguous(memory_format=layout_of(x))
    shape = (x.shape[0], conv.out_channels, *x.shape[2:])
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout_of(x))
    for start in range(0, frames, step):
        stop = min(frames, start + step)
        out[:, :, start:stop] = run(start, stop)
    return out


def run_conv(
    conv: nn.Conv3d, x: torch.Tensor, head: torch.Tensor | None, kernels: VAEKernels
) -> torch.Tensor:
    """`causal_conv` with the method `kernels` gives, measured once per layer shape if asked."""
    method = kernels.conv
    if method == MEASURED:
        method = _measured_method(conv, x, head, kernels)
    return causal_conv(conv, x, head, method, kernels.max_elements)


def _measured_method(conv: nn.Conv3d, x, head, kernels: VAEKernels) -> str:
    """The method `kernels.measure` finds fastest for this layer at x's shape but its length.

    Every method is timed on the first `PROBE_FRAMES` frames (cost is linear in time), so the
    choice costs a few calls per layer shape, once (the measure remembers it).
    """
    probe = x[:, :, :PROBE_FRAMES]
    key = (
        tuple(conv.weight.shape),
        tuple(conv.padding),
        tuple(x.shape[:2]),
        tuple(x.shape[3:]),
        x.dtype,
        str(x.device),
        str(layout_of(x)),
    )
    runs = {
        m: (lambda m=m: causal_conv(conv, probe, head, m, kernels.max_elements)) for m in METHODS
    }
    return kernels.measure(key, runs)
