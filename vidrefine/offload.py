"""Layer streaming: transformer blocks live in (pinned) host memory and visit the GPU one at a time.

`BlockStreamer` moves each block's weights to the host once, then a forward pre-hook copies them to
the device just before the block runs and a forward hook points the parameters back at the host
copies, so only the running block's weights occupy the device (the next block is not yet
prefetched on a side stream, so each copy waits for the GPU). The declared order is the module
order of `blocks` (how the DiT calls them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class BlockStreamer:
    """Stream `blocks` to `device` for each forward; `loads` counts copies (for tests and logs)."""

    def __init__(self, blocks: Sequence[nn.Module], device: torch.device, *, pin: bool = True):
        """Move every block's parameters to host memory (pinned when CUDA is there and `pin`)."""
        self.blocks = list(blocks)
        self.device = torch.device(device)
        self.pin = pin and torch.cuda.is_available()
        self.loads = 0
        self._host: list[list[tuple[nn.Parameter, torch.Tensor]]] = []
        self._handles: list = []
        for block in self.blocks:
            pairs = []
            for param in block.parameters():
                host = param.data.to("cpu", copy=True)
                host = host.pin_memory() if self.pin else host
                param.data = host
                pairs.append((param, host))
            self._host.append(pairs)
        for index, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(self._loader(index)))
            self._handles.append(block.register_forward_hook(self._unloader(index)))

    def _loader(self, index: int):
        def load(_module: nn.Module, _args: tuple) -> None:
            for param, host in self._host[index]:
                # copy=True: a real copy even when device is the CPU, so the hooks are testable
                param.data = host.to(self.device, non_blocking=self.pin, copy=True)
            self.loads += 1

        return load

    def _unloader(self, index: int):
        def unload(_module: nn.Module, _args: tuple, _output: object) -> None:
            for param, host in self._host[index]:
                param.data = host  # the device copy is freed once the caching allocator sees it

        return unload

    def host_bytes(self) -> int:
        """Bytes of block weights held in host memory."""
        return sum(h.numel() * h.element_size() for pairs in self._host for _, h in pairs)

    def remove(self) -> None:
        """Stop streaming: hooks removed, weights stay on the host."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def stream_blocks(model: nn.Module, device: torch.device) -> BlockStreamer:
    """Stream `model.blocks` layer by layer; the rest of the model stays where it is."""
    return BlockStreamer(model.blocks, device)


def stream_model(
    model: nn.Module, blocks: Sequence[nn.Module], device: torch.device
) -> BlockStreamer:
    """Put everything of `model` but `blocks` on `device` and stream `blocks` from the host.

    For a model loaded on the CPU: the whole model never sits on the device at once.
    """
    streamed = {id(t) for block in blocks for t in (*block.parameters(), *block.buffers())}
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in streamed:
            tensor.data = tensor.data.to(device)
    return BlockStreamer(blocks, device)
