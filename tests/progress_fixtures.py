"""A progress display that stands in for a user pressing Ctrl-C part-way through a run."""

from __future__ import annotations


class InterruptAfterWindows:
    """Raises KeyboardInterrupt once `count` windows have finished; keeps every note it gets."""

    def __init__(self, count: int = 1) -> None:
        self.left = count
        self.notes: list[str] = []

    def task(self, label, total=None, unit="frames"):
        outer = self

        class Task:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return None

            def advance(self, n=1):
                if label == "windows":
                    outer.left -= n
                    if outer.left <= 0:
                        raise KeyboardInterrupt

            def set_total(self, total):
                return None

        return Task()

    def info(self, message):
        self.notes.append(message)

    def warn(self, message):
        self.notes.append(message)
