"""Picking the fastest of several equivalent computations by measuring them once (issue 21), and
`torch.compile` wrappers made once per function.

`FastestChoice` times candidate callables (CUDA events on a GPU, the wall clock elsewhere) the
first time it sees a key and answers from its memory afterwards: the VAE asks it, per layer
shape, whether one conv3d or a sum of conv2d calls is faster (`models.vae_conv`). The shapes of a
window are fixed, so each is measured once per process. `compiled(fn)` is `torch.compile(fn)`,
made once and shared, so every caller of a fused function uses the same compiled graphs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

import torch

REPEATS = 2  # timed runs per candidate after one untimed warm-up; the fastest run counts


class FastestChoice:
    """Remembers, per key, which candidate ran fastest when first measured.

    Call it as `choice(key, {name: run})`: the first time a key is seen every `run()` is called
    once untimed (warm-up: cuDNN plans, allocator growth) and `repeats` times timed; a candidate
    that raises (out of memory, an unsupported shape) is dropped, and if all raise the first
    error propagates. Later calls with the key return the remembered name without running
    anything. `timings` keeps the seconds of each measured key, for reports.
    """

    def __init__(self, repeats: int = REPEATS) -> None:
        """Start with nothing measured."""
        self.repeats = repeats
        self.picks: dict[tuple, str] = {}
        self.timings: dict[tuple, dict[str, float]] = {}

    def __call__(self, key: tuple, runs: Mapping[str, Callable[[], object]]) -> str:
        """The name of the fastest of `runs` for `key` (measured now if `key` is new)."""
        if key in self.picks:
            return self.picks[key]
        seconds: dict[str, float] = {}
        failure: Exception | None = None
        for name, run in runs.items():
            try:
                seconds[name] = self._time(run)
            except (RuntimeError, ValueError) as exc:  # torch's OOM is a RuntimeError
                failure = failure or exc
                _release_memory()
        if not seconds:
            raise failure if failure else ValueError("no candidate to choose from")
        self.timings[key] = seconds
        self.picks[key] = min(seconds, key=seconds.get)
        return self.picks[key]

    def _time(self, run: Callable[[], object]) -> float:
        with torch.no_grad():
            run()
            best = float("inf")
            for _ in range(self.repeats):
                with _clock() as elapsed:
                    run()
                best = min(best, elapsed())
        return best


@contextlib.contextmanager
def _clock() -> Iterator[Callable[[], float]]:
    """Seconds spent in the block, on the current CUDA stream when CUDA is initialised."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result: list[float] = []
        yield lambda: result[0]
        end.record()
        end.synchronize()
        result.append(start.elapsed_time(end) / 1000.0)
        return
    began = time.perf_counter()
    result = []
    yield lambda: result[0]
    result.append(time.perf_counter() - began)


def _release_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


FASTEST = FastestChoice()  # the process's choices: windows of one shape are measured once

_COMPILED: dict[tuple[Callable, tuple], Callable] = {}


def compiled(fn: Callable, **options) -> Callable:
    """`torch.compile(fn, **options)`, made once per (fn, options) and shared afterwards.

    Compilation itself happens at the first call of each input shape (inductor generates a
    kernel; on the CPU that needs a C++ compiler, on CUDA Triton).
    """
    key = (fn, tuple(sorted(options.items())))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, **options)
    return _COMPILED[key]
