"""Layer streaming: transformer blocks live in (pinned) host memory and visit the GPU one at a time.

`BlockStreamer` keeps every block's weights on the host. Before block i runs, its copy on the
device is put under its parameters, and the copy of block i+1 is started; after block i, its
parameters point back at the host tensors and the device copy is dropped. So at most two blocks'
weights are on the device: the one running and the one arriving.

On CUDA the copies run on a side stream from pinned memory, so block i+1 arrives while block i
computes: the compute stream waits on the copy's event only when it needs the block, and each
device copy is marked as used by the compute stream (`record_stream`) so the caching allocator
does not hand its memory to the next copy before the block has finished. Elsewhere (the CPU, or
`prefetch=False`) the same order runs with plain copies, which is what the CPU tests exercise.

Blocks are expected in module order on every call (block 0 is prefetched after the last one), but
any order is correct: a block that was not prefetched is copied when it is about to run, and a
copy that is not the next one needed is dropped. A forward that raises halfway leaves nothing
behind that the next call would compute with: every stale copy is dropped at the next block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class _DeviceCopy:
    """One block's weights on the device, and the CUDA event that marks the copy done."""

    tensors: list[torch.Tensor]
    ready: torch.cuda.Event | None


class BlockStreamer:
    """Stream `blocks` to `device` for each forward.

    `loads` counts block copies issued, `prefetched` those that were already under way when
    their block started (both for tests and logs).
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        device: torch.device | str,
        *,
        pin: bool = True,
        prefetch: bool = True,
    ) -> None:
        """Move every block's parameters to host memory (pinned on CUDA when `pin`)."""
        self.blocks = list(blocks)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.pin = pin and cuda
        self.prefetch = prefetch
        self._copy_stream = torch.cuda.Stream(self.device) if cuda and prefetch else None
        self.loads = 0
        self.prefetched = 0
        self._host: list[list[tuple[nn.Parameter, torch.Tensor]]] = []
        self._copies: dict[int, _DeviceCopy] = {}
        self._handles: list = []
        for block in self.blocks:
            pairs = []
            for param in block.parameters():
                host = param.data.to("cpu")  # no copy for a model loaded on the host
                host = host.pin_memory() if self.pin else host
                param.data = host
                pairs.append((param, host))
            self._host.append(pairs)
            for buffer in block.buffers():  # small, and needed wherever the block runs
                buffer.data = buffer.data.to(self.device)
        for index, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(self._loader(index)))
            self._handles.append(block.register_forward_hook(self._unloader(index)))

    def _copy(self, index: int) -> None:
        """Start copying block `index` to the device unless a copy exists."""
        if index in self._copies:
            return
        hosts = [host for _, host in self._host[index]]
        if self._copy_stream is None:
            # copy=True: a real copy even when the device is the CPU, so the order is testable
            tensors = [h.to(self.device, non_blocking=self.pin, copy=True) for h in hosts]
            self._copies[index] = _DeviceCopy(tensors, None)
        else:
            with torch.cuda.stream(self._copy_stream):
                tensors = [h.to(self.device, non_blocking=True) for h in hosts]
                ready = torch.cuda.Event()
                ready.record(self._copy_stream)
            self._copies[index] = _DeviceCopy(tensors, ready)
        self.loads += 1

    def _drop(self, index: int) -> None:
        """Forget block `index`'s device copy; its parameters point at the host again."""
        self._copies.pop(index, None)
        for param, host in self._host[index]:
            param.data = host

    def _loader(self, index: int):
        def load(_module: nn.Module, _args: tuple) -> None:
            for other in [i for i in self._copies if i != index]:
                self._drop(other)  # stale: from a call that raised or ran blocks out of order
            if index in self._copies:
                self.prefetched += 1
            self._copy(index)
            copy = self._copies[index]
            if copy.ready is not None:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_event(copy.ready)
                for tensor in copy.tensors:
                    tensor.record_stream(compute)
            for (param, _host), tensor in zip(self._host[index], copy.tensors, strict=True):
                param.data = tensor
            if self.prefetch and len(self.blocks) > 1:
                self._copy((index + 1) % len(self.blocks))

        return load

    def _unloader(self, index: int):
        def unload(_module: nn.Module, _args: tuple, _output: object) -> None:
            self._drop(index)  # the device copy is freed once the compute stream is past it

        return unload

    def resident(self) -> int:
        """Blocks whose weights are on the device now (running or arriving)."""
        return len(self._copies)

    def host_bytes(self) -> int:
        """Bytes of block weights held in host memory."""
        return sum(h.numel() * h.element_size() for pairs in self._host for _, h in pairs)

    def remove(self) -> None:
        """Stop streaming: hooks removed, device copies dropped, weights stay on the host."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for index in list(self._copies):
            self._drop(index)


def stream_model(
    model: nn.Module,
    blocks: Sequence[nn.Module],
    device: torch.device | str,
    *,
    prefetch: bool = True,
) -> BlockStreamer:
    """Put everything of `model` but `blocks` on `device` and stream `blocks` from the host.

    Meant for a model loaded on the CPU: the whole model is never on the device at once.
    """
    streamed = {id(t) for block in blocks for t in (*block.parameters(), *block.buffers())}
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in streamed:
            tensor.data = tensor.data.to(device)
    return BlockStreamer(blocks, device, prefetch=prefetch)


def stream_blocks(model: nn.Module, device: torch.device | str) -> BlockStreamer:
    """Stream `model.blocks` layer by layer and put the rest of `model` on `device`."""
    return stream_model(model, model.blocks, device)
