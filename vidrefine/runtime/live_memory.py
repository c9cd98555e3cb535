"""Measured peak of live tensor memory on any device, the CPU included (for planner tests).

CUDA has an allocator that counts bytes (`torch.cuda.max_memory_allocated`); the CPU has none
that torch exposes. `LiveTensorMemory` is a dispatch mode that sees every tensor an operator
creates, adds the bytes of each new storage and subtracts them when the last tensor that shows
the storage is freed. Views and in-place results share an input's storage and add nothing.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorMemory(TorchDispatchMode):
    """Track `live` and `peak` bytes of storages created while the mode is active.

    Storages that existed before (weights, inputs) are not counted, so `peak` is the working
    memory of the code run inside: activations and outputs.
    """

    def __init__(self) -> None:
        """Start with nothing live."""
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # data_ptr -> [tensors alive, bytes]

    def reset_peak(self) -> None:
        """Start a new peak measurement from what is live now."""
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self._track(tensor, inputs)
        return out

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0:
            return
        entry = self._storages.get(key)
        if entry is None:
            if key in inputs:
                return  # a view or in-place result of a storage made outside the mode
            entry = self._storages[key] = [0, size]
            self.live += size
            self.peak = max(self.peak, self.live)
        entry[0] += 1
        weakref.finalize(tensor, self._release, key, entry)

    def _release(self, key: int, entry: list[int]) -> None:
        entry[0] -= 1
        if entry[0] == 0 and self._storages.get(key) is entry:
            del self._storages[key]
            self.live -= entry[1]
