"""Background I/O: decode ahead and encode behind on threads so the model never waits for files.

Decoding (PyAV) and encoding (libx264) release the GIL for most of their work, so a thread is
enough. Results and their order are unchanged; only when the work happens moves.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` in order while a thread produces up to `depth` ahead.

    An exception in the producer is raised here, at the item where it happened; closing the
    iterator early stops the producer.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put((_DONE, exc))

    worker = threading.Thread(target=produce, name="vidrefine-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


class BackgroundWriter:
    """Wrap a writer so `write(frames, pts)` returns at once and encoding runs on a thread.

    Writes happen in call order. A failure on the thread is raised by the next `write` or on
    exit; on an exception in the caller, pending frames are dropped and the writer aborts.
    """

    def __init__(self, writer: Any, depth: int = 2) -> None:
        """Queue at most `depth` pending writes (each holds one window of frames)."""
        self.writer = writer
        self._jobs: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vidrefine-writer", daemon=True)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _DONE:
                return
            if self._error is None:
                try:
                    self.writer.write(*job)
                except BaseException as exc:
                    self._error = exc

    def write(self, frames: Any, pts: Any) -> None:
        """Queue one chunk of frames (T, H, W, 3) with their pts; raises an earlier failure."""
        self._raise()
        self._jobs.put((frames, pts))

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundWriter:
        self.writer.__enter__()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is not None:
            self._error = self._error or exc  # the thread skips what is still queued
        self._jobs.put(_DONE)
        self._thread.join()
        if exc_type is None and self._error is not None:
            failure = self._error
            self.writer.__exit__(type(failure), failure, failure.__traceback__)
            raise failure
        return self.writer.__exit__(exc_type, exc, tb)
