"""Distributed setup: torchrun's environment, the process group and a shared work counter.

vidrefine scales out on `torch.distributed` as started by `torchrun` (one node or many): every
process ("rank") runs the same command, reads its place from the environment torchrun sets
(`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), binds to its local GPU and
joins one process group (NCCL on CUDA, gloo on the CPU). Without torchrun nothing here
initialises anything: `rank_info()` is rank 0 of 1 and every helper is a no-op.

Work is handed out dynamically through the process group's key-value store: `hand_out` draws
indices from an atomic counter, so a rank that finishes takes the next item and no item is
taken twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from vidrefine.errors import VidrefineError, first_line

T = TypeVar("T")

# The variables torchrun (torch.distributed.run) sets for every worker it starts.
TORCHRUN_KEYS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
_STORE_PREFIX = "vidrefine"
_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class RankInfo:
    """One process's place in the run: its global rank, the world size and its local GPU index.

    `backend` is "nccl" or "gloo" once the process group is up, None for a single process (or
    before `init_distributed`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that prints progress and writes shared summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def tag(self) -> str:
        """The prefix other ranks put on their log lines ("[rank 1] "); empty on rank 0."""
        return f"[rank {self.rank}] " if self.rank else ""


class RankLost(VidrefineError):
    """Another rank stopped (a crash, a kill, a machine gone) while this one waited for it."""


@contextmanager
def peers_guard() -> Iterator[None]:
    """Turn a collective that fails because a peer went away into one RankLost line."""
    try:
        yield
    except RuntimeError as exc:  # gloo/NCCL/store errors (DistError is a RuntimeError)
        first = first_line(exc)[:200]
        raise RankLost(
            f"lost contact with another rank ({first}); finished windows are kept: run the "
            "same command again, with any number of ranks, to resume"
        ) from exc


class _State:
    """The process group's store, kept for the work counters (set once by init_distributed)."""

    store: Any = None
    counters: int = 0


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process was started by torchrun (RANK and WORLD_SIZE are set)."""
    env = os.environ if environ is None else environ
    return "RANK" in env and "WORLD_SIZE" in env


def environment_rank(environ: Mapping[str, str] | None = None) -> RankInfo:
    """The place torchrun's variables give this process (rank 0 of 1 without torchrun)."""
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return RankInfo()
    return RankInfo(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", "0")),
    )


def rendezvous_address(environ: Mapping[str, str] | None = None) -> str | None:
    """`MASTER_ADDR:MASTER_PORT` of the rendezvous, or None when torchrun set neither."""
    env = os.environ if environ is None else environ
    if "MASTER_ADDR" not in env:
        return None
    return f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '?')}"


def backend_for(device_kind: str) -> str:
    """The collective backend for a device kind: NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device_kind == "cuda" and torch.cuda.is_available() else "gloo"


def init_distributed(device_kind: str = "cpu") -> RankInfo:
    """Join torchrun's process group (idempotent) and bind this rank to its local GPU.

    Args:
        device_kind: "cuda" or "cpu": the kind of device the models will run on.

    Returns:
        This process's RankInfo; rank 0 of 1, with nothing initialised, without torchrun or
        when torchrun started a single process.
    """
    if dist.is_available() and dist.is_initialized():
        return rank_info()
    place = environment_rank()
    if not place.distributed or not dist.is_available():
        return place
    backend = backend_for(device_kind)
    if backend == "nccl":
        torch.cuda.set_device(place.local_rank)
    _import_dynamo_first()
    store, rank, world_size = next(dist.rendezvous("env://", timeout=_TIMEOUT))
    store.set_timeout(_TIMEOUT)
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world_size, timeout=_TIMEOUT
    )
    _State.store = dist.PrefixStore(_store_prefix(), store)
    _State.counters = 0
    return rank_info()


def _import_dynamo_first() -> None:
    """Import torch._dynamo before the process group exists.

    Imported later (transformers does when the T5 tokenizer loads), it keeps references to the
    default group that `destroy_process_group` does not drop: gloo's threads then outlive
    `shutdown()` and are torn down while the interpreter exits, which now and then aborts a rank
    ("terminate called without an active exception") after all its work is done.
    """
    import torch._dynamo  # noqa: F401


def _store_prefix(environ: Mapping[str, str] | None = None) -> str:
    """Our keys' prefix in the store: new for each restart of the worker group.

    torchrun's store outlives a restart (`--max-restarts`); the counters of the run that died
    must not be read by the restarted one.
    """
    env = os.environ if environ is None else environ
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"{_STORE_PREFIX}/{env.get('TORCHELASTIC_RUN_ID', 'run')}/{attempt}"


def rank_info() -> RankInfo:
    """This process's place, wherever it is known from.

    From the process group once initialised, else from torchrun's environment (backend None),
    else rank 0 of 1.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return environment_rank()
    local = environment_rank().local_rank
    backend = str(dist.get_backend())
    return RankInfo(dist.get_rank(), dist.get_world_size(), local, backend)


def rank_device() -> torch.device:
    """This process's device: `cuda:LOCAL_RANK` under torchrun on a GPU machine, else the
    first CUDA device or the CPU (`runtime.device.pick_device`).
    """
    from vidrefine.runtime.device import pick_device

    device = pick_device()
    if device.type == "cuda" and launched_by_torchrun():
        return torch.device("cuda", environment_rank().local_rank)
    return device


def barrier(group: dist.ProcessGroup | None = None) -> None:
    """Wait for every rank of `group` (default: all; a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
        nccl = dist.get_backend(group) == "nccl"  # NCCL wants the device it synchronises on
        with peers_guard():
            dist.barrier(group, device_ids=[torch.cuda.current_device()] if nccl else None)


def global_rank(group: dist.ProcessGroup | None, rank: int) -> int:
    """The global rank of `group`'s rank `rank` (the same rank for the default group)."""
    return rank if group is None else dist.get_global_rank(group, rank)


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's `value` (picklable), in rank order, on rank 0; None on the other ranks.

    In a single process this is `[value]`.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    values: list[T] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None  # type: ignore[list-item]
    with peers_guard():
        dist.gather_object(value, values, dst=0)
    return values


def all_gather(value: T, group: dist.ProcessGroup | None = None) -> list[T]:
    """Every rank's `value` (picklable), in `group`'s rank order (default: all ranks), on every
    rank of it; `[value]` alone.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return [value]
    values: list[T] = [None] * dist.get_world_size(group)  # type: ignore[list-item]
    with peers_guard():
        dist.all_gather_object(values, value, group=group)
    return values


@contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each node's local rank 0 first, then on that node's other ranks.

    For work that must not run twice at once on one machine (fetching weights into a shared
    folder): the others then find it done. Every rank must enter the block.
    """
    info = rank_info()
    if info.distributed and info.local_rank != 0:
        barrier()
    yield
    if info.distributed and info.local_rank == 0:
        barrier()


def hand_out(items: Sequence[T]) -> Iterator[tuple[int, T]]:
    """Yield (index, item) pairs of `items` to whichever rank asks first, each exactly once.

    Every rank must call `hand_out` with the same items, in the same order of calls: each call
    uses its own counter in the process group's store, whose atomic `add` hands each index to
    one rank only. A rank that finishes an item early simply asks for the next one. In a single
    process every item is yielded in order; in a process group that `init_distributed` did not
    set up (no store of ours) each rank takes every world-size-th item.
    """
    info = rank_info()
    if _State.store is None:
        yield from list(enumerate(items))[info.rank :: info.world_size]
        return
    key = f"handout/{_State.counters}"
    _State.counters += 1
    while (index := _next(key)) < len(items):
        yield index, items[index]


def _next(key: str) -> int:
    """The next index the counter `key` hands out (0, 1, 2, ... across all ranks)."""
    with peers_guard():
        return _State.store.add(key, 1) - 1


def setup_rows(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """What `vidrefine doctor` says about the distributed set-up this process would use."""
    env = os.environ if environ is None else environ
    place, gpus = environment_rank(env), torch.cuda.device_count()
    kind = "cuda" if gpus else "cpu"
    backend = backend_for(kind)
    usable = dist.is_available() and (backend != "nccl" or dist.is_nccl_available())
    rows = [("backend", f"{backend} ({'available' if usable else 'not available in this torch'})")]
    if not launched_by_torchrun(env):
        rows.append(("torchrun", "not launched: one process (torchrun --nproc-per-node N -m ...)"))
        binding = f"local rank i -> cuda:i, for i < {gpus}" if gpus else "every rank on the CPU"
        return [*rows, ("rank -> device", binding)]
    rows.append(("torchrun", f"rank {place.rank} of {place.world_size}"))
    if gpus and place.local_rank >= gpus:
        device = f"cuda:{place.local_rank}: missing, this machine has {gpus} GPU(s)"
    else:
        device = f"cuda:{place.local_rank}" if gpus else "cpu"
    rows.append(("rank -> device", f"local rank {place.local_rank} -> {device}"))
    return [*rows, ("rendezvous", rendezvous_address(env) or "not set")]


def shutdown() -> None:
    """Leave the process group cleanly (waiting for the other ranks first); idempotent."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    barrier()
    dist.destroy_process_group()
    _State.store = None
    _State.counters = 0
