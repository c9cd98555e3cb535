"""Sequence parallel DiT passes (Ulysses): the video tokens of one pass split over k ranks.

Each rank embeds the whole latent (cheap), keeps its slice of the video tokens and all text
tokens, and runs every token-wise step (norms, modulation, qkv, MLP, head) on its slice only.
For attention an all-to-all turns the token split into a head split: rank j gathers every video
token of its heads, attends them (with the text tokens, which every rank holds) and an
all-to-all turns the result back into its token slice. Heads that k does not divide are split
unevenly (ceil or floor of n / k a rank, e.g. 30 heads on 4 ranks: 8, 8, 7, 7), which costs
what padding to a multiple of k would, without moving padding. The patches of every slice are
gathered at the end, so every rank returns the whole output.

The model stays pure math: this module only swaps each block's attention `kernel` for the
duration of a pass and calls the DiT's own `prepare`, `transform` and `unpatchify`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vidrefine.runtime.distributed import global_rank, peers_guard

Shape = tuple[int, ...]


def split_evenly(total: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) of `parts` consecutive pieces of `total` whose sizes differ by <= 1."""
    return [(total * i // parts, total * (i + 1) // parts) for i in range(parts)]


def exchange(
    sends: Sequence[torch.Tensor], shapes: Sequence[Shape], group: dist.ProcessGroup | None
) -> list[torch.Tensor]:
    """All-to-all of unequal pieces: `sends[j]` goes to group rank j; returns what rank i sent.

    `shapes[i]` is the shape of the piece coming from rank i (same dtype and device as the
    sends). Point-to-point under the hood, so pieces may differ in size (gloo's all_to_all
    needs equal ones); this rank's own piece is not sent anywhere.
    """
    me = dist.get_rank(group)
    like = sends[me]
    received = [like if i == me else like.new_empty(shape) for i, shape in enumerate(shapes)]
    ops = []
    for peer in range(len(sends)):
        if peer == me:
            continue
        other = global_rank(group, peer)
        ops.append(dist.P2POp(dist.isend, sends[peer].contiguous(), other, group))
        ops.append(dist.P2POp(dist.irecv, received[peer], other, group))
    if ops:
        with peers_guard():
            for work in dist.batch_isend_irecv(ops):
                work.wait()
    return received


class UlyssesAttention:
    """One rank's attention kernel: q, k, v (B, n, L + N_me, d) -> (B, n, L + N_me, d).

    The first `text_len` tokens are text (held whole by every rank); the rest is this rank's
    slice of the video tokens, `token_spans[rank]` of the whole video.
    """

    def __init__(
        self, group: dist.ProcessGroup | None, text_len: int, token_spans: list[tuple[int, int]]
    ) -> None:
        self.group, self.text_len, self.token_spans = group, text_len, token_spans
        self.rank = dist.get_rank(group)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of this rank's tokens over every token of the pass."""
        heads = split_evenly(q.shape[1], len(self.token_spans))
        o = self._attend_my_heads(torch.stack([q, k, v]), heads)  # (B, n_me, L + N, d)
        text = self.text_len
        sends = [
            torch.cat([o[:, :, :text], o[:, :, text + lo : text + hi]], dim=2)
            for lo, hi in self.token_spans
        ]
        mine = self.token_spans[self.rank]
        b, _, _, d = o.shape
        shapes = [(b, h1 - h0, text + mine[1] - mine[0], d) for h0, h1 in heads]
        return torch.cat(exchange(sends, shapes, self.group), dim=1)

    def _attend_my_heads(self, qkv: torch.Tensor, heads: list[tuple[int, int]]) -> torch.Tensor:
        """Stacked q, k, v (3, B, n, L + N_me, d) -> attention (B, n_me, L + N, d) of my heads."""
        text = self.text_len
        h0, h1 = heads[self.rank]
        sends = [qkv[:, :, lo:hi, text:] for lo, hi in heads]  # (3, B, n_j, N_me, d)
        three, b, _, _, d = qkv.shape
        shapes = [(three, b, h1 - h0, hi - lo, d) for lo, hi in self.token_spans]
        video = exchange(sends, shapes, self.group)  # every video token of my heads
        full = torch.cat([qkv[:, :, h0:h1, :text], *video], dim=3)  # (3, B, n_me, L + N, d)
        del video
        return F.scaled_dot_product_attention(full[0], full[1], full[2])


@contextlib.contextmanager
def attention_kernel(dit: nn.Module, kernel: object) -> Iterator[None]:
    """Every block of `dit` attends with `kernel` inside the block (restored afterwards)."""
    attentions = [block.attn for block in dit.blocks]
    saved = [attn.kernel for attn in attentions]
    for attn in attentions:
        attn.kernel = kernel
    try:
        yield
    finally:
        for attn, old in zip(attentions, saved, strict=True):
            attn.kernel = old


def gather_tokens(
    patches: torch.Tensor, spans: list[tuple[int, int]], group: dist.ProcessGroup | None
) -> torch.Tensor:
    """Every rank's slice of tokens (B, N_i, P), concatenated in order: (B, N, P) on all ranks."""
    b, _, width = patches.shape
    shapes = [(b, hi - lo, width) for lo, hi in spans]
    return torch.cat(exchange([patches] * len(spans), shapes, group), dim=1)


def sequence_forward(
    dit: nn.Module,
    group: dist.ProcessGroup | None,
    x: torch.Tensor,
    timestep_index: torch.Tensor,
    context: torch.Tensor,
    **conditions: torch.Tensor | None,
) -> torch.Tensor:
    """`dit(x, timestep_index, context, **conditions)` with its video tokens split over `group`.

    Returns the whole output (B, T, C, H, W) on every rank of the group, equal to the
    one-process pass within float rounding.
    """
    emb, video, text, rotation = dit.prepare(x, timestep_index, context, **conditions)
    spans = split_evenly(video.shape[1], dist.get_world_size(group))
    lo, hi = spans[dist.get_rank(group)]
    text_len = text.shape[1]
    mine = video[:, lo:hi].clone()  # a copy: the whole video's tokens are freed now
    rotation = torch.cat([rotation[:text_len], rotation[text_len + lo : text_len + hi]])
    del video
    kernel = UlyssesAttention(group, text_len, spans)
    with attention_kernel(dit, kernel):
        patches = dit.transform(mine, text, emb, rotation)
    whole = gather_tokens(patches, spans, group)
    return dit.unpatchify(whole, (x.shape[1], x.shape[3], x.shape[4]))
