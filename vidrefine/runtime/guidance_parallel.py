"""One DiT pass over several ranks: guidance branches on different ranks, tokens split within.

`ParallelDiT` stands in for the DiT in the sampler's velocity. Called with the batched guidance
pair [cond; uncond] (stage II batches its classifier-free guidance), each of the 2 guidance
ranks runs one half and one all-gather per step hands both halves to every rank, so the
guidance combine u + s (c - u) runs unchanged (`sampling.guidance`) on the same numbers
everywhere. Inside each branch the pass may be sequence parallel over k ranks
(`runtime.sequence_parallel`): 2 x k ranks in all, ranks [0, k) conditional, [k, 2k)
unconditional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from vidrefine.errors import BadInput
from vidrefine.runtime.distributed import peers_guard
from vidrefine.runtime.sequence_parallel import sequence_forward

BRANCHES = 2  # plan.ranks.GUIDANCE_BRANCHES (runtime does not import plan)


@dataclass(frozen=True)
class PassGroups:
    """The process groups of one rank: its guidance pair and its sequence group (None: alone)."""

    guidance: dist.ProcessGroup | None
    sequence: dist.ProcessGroup | None
    branch: int  # 0: conditional half of a batched pair, 1: unconditional


def pass_groups(guidance_ranks: int, sequence_ranks: int) -> PassGroups:
    """Build (collectively: every rank calls this alike) the groups of a 2 x k layout.

    Raises BadInput when the world is not `guidance_ranks * sequence_ranks` ranks.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if guidance_ranks * sequence_ranks != world:
        raise BadInput(
            f"{guidance_ranks} guidance x {sequence_ranks} sequence ranks is not the "
            f"{world} ranks torchrun started"
        )
    k, g = sequence_ranks, guidance_ranks
    pairs = [dist.new_group([j + i * k for i in range(g)]) for j in range(k)] if g > 1 else []
    rows = [dist.new_group(list(range(i * k, (i + 1) * k))) for i in range(g)] if k > 1 else []
    return PassGroups(
        guidance=pairs[rank % k] if pairs else None,
        sequence=rows[rank // k] if rows else None,
        branch=rank // k if pairs else 0,
    )


class ParallelDiT(nn.Module):
    """The DiT with each pass split over ranks as `groups` says; the same call signature."""

    def __init__(self, dit: nn.Module, groups: PassGroups) -> None:
        """Wrap `dit` (shared, not copied: its blocks' attention kernel is swapped per pass)."""
        super().__init__()
        self.dit = dit
        self.groups = groups

    def forward(
        self, x: torch.Tensor, timestep_index: torch.Tensor, context: torch.Tensor, **conditions
    ) -> torch.Tensor:
        """Like `VideoDiT.forward`; a batched guidance pair is split over the guidance ranks."""
        group = self.groups.guidance
        if group is None or x.shape[0] % BRANCHES:
            return self._pass(x, timestep_index, context, conditions)
        half = x.shape[0] // BRANCHES
        rows = slice(self.groups.branch * half, (self.groups.branch + 1) * half)
        mine = {k: _rows(v, rows, x.shape[0]) for k, v in conditions.items()}
        out = self._pass(x[rows], _rows(timestep_index, rows, x.shape[0]), context[rows], mine)
        out = out.contiguous()
        parts = [torch.empty_like(out) for _ in range(BRANCHES)]
        with peers_guard():
            dist.all_gather(parts, out, group=group)  # the one collective of guidance, per pass
        return torch.cat(parts)

    def _pass(self, x, timestep_index, context, conditions) -> torch.Tensor:
        if self.groups.sequence is None:
            return self.dit(x, timestep_index, context, **conditions)
        return sequence_forward(
            self.dit, self.groups.sequence, x, timestep_index, context, **conditions
        )


def _rows(value: torch.Tensor | None, rows: slice, batch: int) -> torch.Tensor | None:
    """`value[rows]` for a per-sample tensor of the batch; scalars and None pass through."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return value[rows]
    return value
