"""How the ranks torchrun started share one clip: the layout, and which rank holds which window.

Modes (docs/distributed.md): "files" (each rank a whole clip: the plan is the one-process plan),
"windows" (the clip's windows round-robin over the ranks, in rounds of N consecutive windows),
"guidance" (2 ranks: the conditional and unconditional branch of every DiT pass),
"sequence" (k ranks: the video tokens of every DiT pass, Ulysses) and "guidance+sequence"
(2 x k ranks). Plain arithmetic, decided once when the plan is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from vidrefine.errors import BadInput
from vidrefine.plan.windows import Window

LAYOUT_MODES = ("files", "windows", "guidance", "sequence", "guidance+sequence")
GUIDANCE_BRANCHES = 2  # conditional and unconditional (zero caption) passes


@dataclass(frozen=True)
class RankLayout:
    """`ranks` processes sharing the clips as `mode` says; one process is ("files", 1)."""

    mode: str = "files"
    ranks: int = 1

    def __post_init__(self) -> None:
        if self.mode not in LAYOUT_MODES:
            raise BadInput(f"parallel mode {self.mode!r} is not one of {', '.join(LAYOUT_MODES)}")
        if self.ranks < 1:
            raise BadInput(f"ranks must be at least 1, not {self.ranks}")
        if "guidance" in self.mode and self.ranks % GUIDANCE_BRANCHES:
            raise BadInput(
                f"--parallel {self.mode} needs an even number of ranks (one per guidance "
                f"branch{', times the sequence ranks' * ('sequence' in self.mode)}), not "
                f"{self.ranks}"
            )
        if self.mode == "guidance" and self.ranks != GUIDANCE_BRANCHES:
            raise BadInput(
                f"--parallel {self.mode} uses {GUIDANCE_BRANCHES} ranks, not {self.ranks}; "
                "use guidance+sequence for more"
            )

    @property
    def guidance_ranks(self) -> int:
        """Ranks the two guidance branches are split over (1: both on every rank)."""
        return GUIDANCE_BRANCHES if "guidance" in self.mode else 1

    @property
    def sequence_ranks(self) -> int:
        """Ranks the video tokens of one DiT pass are split over (k of Ulysses)."""
        return self.ranks // self.guidance_ranks if "sequence" in self.mode else 1

    @property
    def window_ranks(self) -> int:
        """Ranks the windows of one clip are spread over."""
        return self.ranks if self.mode == "windows" else 1

    def check_heads(self, num_heads: int) -> None:
        """Refuse more sequence ranks than attention heads (each rank attends >= 1 head).

        Heads need not divide evenly: ranks take ceil or floor of heads / k (see
        `runtime.sequence_parallel`).
        """
        if self.sequence_ranks > num_heads:
            raise BadInput(
                f"{self.sequence_ranks} sequence ranks but the DiT has {num_heads} attention "
                f"heads; use at most {num_heads}"
            )

    def line(self) -> str:
        """'windows over 3 ranks'; 'one process' without ranks."""
        if self.ranks == 1:
            return "one process"
        return f"{self.mode} over {self.ranks} ranks"


def window_rank(index: int, ranks: int) -> int:
    """The rank holding window `index`: rounds of `ranks` consecutive windows, round-robin."""
    return index % ranks


def assign_windows(windows: Sequence[Window], layout: RankLayout) -> tuple[Window, ...]:
    """`windows` with their `rank` filled in for `layout` (0 unless the windows are spread)."""
    n = layout.window_ranks
    return tuple(dataclasses.replace(w, rank=window_rank(w.index, n)) for w in windows)


def windows_by_rank(windows: Sequence[Window], ranks: int) -> dict[int, list[int]]:
    """Rank -> the (0-based) indices of the windows it holds, every rank listed."""
    held: dict[int, list[int]] = {rank: [] for rank in range(ranks)}
    for window in windows:
        held[window.rank].append(window.index)
    return held


def layout_for(parallel: str, ranks: int, clips: int = 1) -> RankLayout:
    """The layout `--parallel` asks for on `ranks` ranks; "auto" is files when there are at
    least as many clips as ranks, windows otherwise (as `upscale` decides).
    """
    if ranks == 1:
        return RankLayout()
    if parallel == "auto":
        parallel = "files" if clips >= ranks else "windows"
    return RankLayout(parallel, ranks)


@dataclass(frozen=True)
class PassShape:
    """The sizes one step's traffic depends on (one window, one sample)."""

    video_tokens: int  # T * h/p * w/p
    text_tokens: int
    hidden: int  # D
    layers: int
    latent_values: int  # T * C * h * w of one sample (a DiT output)
    overlap_values: int  # O * C * h * w (the overlap a window hands on)
    dtype_bytes: int


def bytes_sent_per_step(layout: RankLayout, shape: PassShape) -> int:
    """Bytes one rank sends in one Euler step (one DiT pass of each guidance branch).

    windows: the overlap latents to the next window's rank. guidance: its branch's output in
    one all-gather. sequence (k ranks): per block, the q, k, v of its tokens for the other
    ranks' heads, then its heads' attention output (text included) for the other ranks'
    tokens; at the end its tokens' output for every other rank. Decoded frames (windows: once
    a window, to rank 0) are not per step and not counted.
    """
    if layout.mode == "windows":
        return shape.overlap_values * shape.dtype_bytes
    branches = 2 // layout.guidance_ranks  # batched guidance: both branches a pass
    sent = 0
    if layout.guidance_ranks > 1:
        sent += shape.latent_values * shape.dtype_bytes
    k = layout.sequence_ranks
    if k > 1:
        tokens, width = shape.video_tokens / k, shape.hidden / k  # my tokens, my heads
        forward = 3 * tokens * shape.hidden * (k - 1) / k
        back = (k - 1) * width * (shape.text_tokens + tokens)
        gather = (k - 1) * shape.latent_values / k
        per_pass = shape.layers * (forward + back) + gather
        sent += int(branches * per_pass * shape.dtype_bytes)
    return sent
