"""One rank's connections in a process group: point-to-point tensors and agreement.

Used by the lockstep modes (`pipeline.lockstep`) and by VAE passes shared over ranks
(`pipeline.tile_share`). A peer that goes away turns into one RankLost line (`peers_guard`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from vidrefine.errors import VidrefineError
from vidrefine.runtime.distributed import all_gather, barrier, global_rank, peers_guard


class Link:
    """This rank's connections in `group`: point-to-point tensors, agreement, bookkeeping."""

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        self.device = torch.device("cpu")
        if dist.get_backend(group) == "nccl":  # NCCL moves CUDA tensors only
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.pending: list[tuple[dist.Work, torch.Tensor]] = []

    def peer(self, rank: int) -> int:
        """Global rank of group rank `rank`."""
        return global_rank(self.group, rank)

    def send(self, tensor: torch.Tensor, rank: int) -> None:
        """Send `tensor` to group rank `rank` without waiting (completed by `finish`)."""
        wire = tensor.detach().to(self.device).contiguous()
        self.pending.append((dist.isend(wire, self.peer(rank), group=self.group), wire))

    def recv(self, shape: tuple[int, ...], dtype: torch.dtype, rank: int) -> torch.Tensor:
        """The next tensor group rank `rank` sends this rank (on the CPU)."""
        wire = torch.empty(shape, dtype=dtype, device=self.device)
        with peers_guard():
            dist.recv(wire, self.peer(rank), group=self.group)
        return wire.cpu()

    def agree(self, decide: Callable[[], Any]) -> Any:
        """`decide()` run on rank 0 and handed to every rank; its VidrefineError too."""
        box: list[Any] = [None]
        if self.rank == 0:
            try:
                box[0] = ("value", decide())
            except VidrefineError as exc:
                box[0] = ("error", exc)
        with peers_guard():
            dist.broadcast_object_list(box, src=self.peer(0), group=self.group)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def total(self, count: int) -> int:
        """The sum of every rank's `count` on rank 0; `count` itself elsewhere."""
        counts = all_gather(count, self.group)
        return sum(counts) if self.rank == 0 else count

    def barrier(self) -> None:
        """Wait for every rank of the group."""
        barrier(self.group)

    def drain(self) -> None:
        """Wait until every tensor this rank sent has arrived."""
        with peers_guard():
            for work, _ in self.pending:
                work.wait()
        self.pending.clear()

    def finish(self) -> None:
        """Wait until every tensor this rank sent has arrived, then for every rank."""
        self.drain()
        self.barrier()


__all__ = ["Link"]
