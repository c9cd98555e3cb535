"""One DiT pass over several ranks (gloo, CPU): guidance parallel, sequence parallel (Ulysses)
and both together equal the one-process pass within float32 rounding, where the heads divide
among the ranks and where they do not. One start of 4 (forked) processes checks every layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from tests.distributed.harness import fork_ranks, free_port
from vidrefine.config import DiTConfig

WORLD = 4
TOLERANCE = 1e-4  # float32: the pieces are the same sums taken in other groupings
# heads 4 divide by 2 and 4 ranks, 3 and 6 do not (3 on 4 ranks: one rank attends none);
# 18 video tokens and 5 text tokens a pass, so the token split is uneven on 4 ranks too
HEADS = (3, 4, 6)


def tiny_dit(heads: int) -> torch.nn.Module:
    """A stage-II DiT of head dim 16 (RoPE's 4/6/6 split), random weights seeded by `heads`."""
    from vidrefine.models.dit import VideoDiT

    cfg = DiTConfig(
        hidden_size=16 * heads,
        num_layers=2,
        num_heads=heads,
        text_dim=8,
        time_embed_dim=32,
        text_length=5,
        stage2_embeddings=True,
    )
    torch.manual_seed(heads)
    model = VideoDiT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def pair_inputs() -> tuple[torch.Tensor, ...]:
    """A batched guidance pair: x twice, [caption; zeros], as stage II calls its DiT."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 16, 4, 6, generator=gen).repeat(2, 1, 1, 1, 1)  # 3 x 2 x 3 tokens
    context = torch.cat([torch.randn(1, 5, 8, generator=gen), torch.zeros(1, 5, 8)])
    index = torch.full((2,), 500.0)
    return x, index, context, torch.full((2,), 3.0), torch.full((2,), 676.0)


def layouts(rank: int) -> dict[str, object]:
    """Every rank builds the same groups in the same order (collective calls)."""
    from vidrefine.runtime.guidance_parallel import PassGroups, pass_groups

    pairs = [dist.new_group([0, 2]), dist.new_group([1, 3])]
    world = dist.new_group(list(range(WORLD)))
    return {
        "guidance": PassGroups(guidance=pairs[rank % 2], sequence=None, branch=rank // 2),
        "sequence x4": PassGroups(guidance=None, sequence=world, branch=0),
        "guidance x sequence 2x2": pass_groups(2, 2),
    }


def worker(rank: int, port: int, out: str) -> None:
    """Each layout's max error against the one-process pass, written by rank 0."""
    from vidrefine.runtime.guidance_parallel import ParallelDiT

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    x, index, context, frames, ref = pair_inputs()
    errors: dict[str, float] = {}
    with torch.no_grad():
        groups = layouts(rank)
        for heads in HEADS:
            dit = tiny_dit(heads)
            alone = dit(x, index, context, num_frames=frames, ref_step=ref)
            for name, group in groups.items():
                split = ParallelDiT(dit, group)(x, index, context, num_frames=frames, ref_step=ref)
                errors[f"{name}, {heads} heads"] = (split - alone).abs().max().item()
            assert all(
                block.attn.kernel is torch.nn.functional.scaled_dot_product_attention
                for block in dit.blocks
            )
    every = [None] * WORLD
    dist.all_gather_object(every, errors)
    if rank == 0:
        worst = {k: max(e[k] for e in every) for k in errors}
        Path(out).write_text(json.dumps(worst))
    dist.destroy_process_group()


def test_split_dit_passes_equal_the_one_process_pass_when_heads_divide_and_when_not(tmp_path):
    out = tmp_path / "errors.json"
    fork_ranks(worker, (free_port(), str(out)), WORLD)
    errors = json.loads(out.read_text())
    assert len(errors) == 3 * len(HEADS)
    print("max error per layout:", errors)
    assert max(errors.values()) < TOLERANCE, errors
