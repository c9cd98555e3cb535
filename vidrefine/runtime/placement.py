"""Where a loaded transformer's weights live: on the device, or streamed block by block from host
memory (`offload = "layer"`), optionally with `torch.compile`d blocks. The one place streaming
is set up, for the stage-II DiT, T5 and a generator's DiT alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vidrefine.config import OFFLOADS
from vidrefine.runtime.offload import BlockStreamer, stream_model


def load_device(offload: str, device: torch.device) -> torch.device:
    """Where to load a model's weights: the host when its blocks will stream, else `device`.

    A streamed model is never whole on the device: only its non-block weights go there.
    """
    return torch.device("cpu") if offload == "layer" else device


def compile_blocks(blocks: Sequence[nn.Module], **options) -> None:
    """Compile each block's `forward` in place (parameter names unchanged).

    One compiled graph serves all layers, which share shapes, so compile time is paid once per
    token count. Only `forward` is compiled, not the module call, so forward hooks (layer
    streaming's loaders) stay outside the graph, and the parameters are graph inputs: swapping
    their storage does not recompile. `options` go to `torch.compile` (e.g. backend="aot_eager").
    """
    for block in blocks:
        block.forward = torch.compile(block.forward, **options)


def place_blocks(
    model: nn.Module,
    blocks: Sequence[nn.Module],
    device: torch.device,
    *,
    offload: str,
    compile: bool = False,
) -> BlockStreamer | None:
    """Apply `offload` and `compile` to a model loaded on `load_device(offload, device)`.

    Returns the streamer (None without layer offload); its `remove()` undoes the streaming.
    """
    if offload not in OFFLOADS:
        raise ValueError(f"offload {offload!r} is not one of {', '.join(OFFLOADS)}")
    streamer = stream_model(model, blocks, device) if offload == "layer" else None
    if compile:
        compile_blocks(blocks)
    return streamer
