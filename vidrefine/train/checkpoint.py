"""A run's folder and its checkpoints: nothing a run learned is lost.

    RUN/run.json              what the run is: settings, cache, base model (written first)
    RUN/checkpoints/step-N/   trainable weights, optimizer, schedule, RNG states, data position
    RUN/metrics.jsonl         one line per step (and per validation)
    RUN/loss.png              the loss so far
    RUN/adapter.safetensors   the adapter (LoRA runs), RUN/stage2-tuned.safetensors (full runs)

A checkpoint is written into a temporary folder and renamed into place when complete, so a
kill while writing leaves the previous one as it was; the newest `keep` are kept. A run folder
is made only where nothing is, and only a folder holding vidrefine's `run.json` is continued.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidrefine.checkpoints.common import save_safetensors
from vidrefine.errors import BadInput, OutputExists, OutputNotWritable
from vidrefine.io.atomic import atomic_output
from vidrefine.train.cache import write_json

FORMAT = "vidrefine-train-run"
RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
_STEP = re.compile(r"^step-(\d{6,})$")
_PARTIAL = re.compile(r"^\.step-\d{6,}\.partial-\d+$")  # a checkpoint being written (or killed)
STATE, WEIGHTS, OPTIMIZER = "state.json", "trainable.safetensors", "optimizer.pt"


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint on disk."""

    path: Path
    step: int


class RunFolder:
    """RUN: made for a new run, or opened to continue one (`--resume`)."""

    def __init__(self, folder: str | Path) -> None:
        """Name the folder; nothing is read or written yet."""
        self.folder = Path(folder)

    @property
    def checkpoints(self) -> Path:
        """Where the step-N folders are."""
        return self.folder / CHECKPOINTS

    def create(self, description: Mapping[str, Any]) -> None:
        """Make the run folder and write run.json; refuse a folder that holds anything."""
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputNotWritable(f"{self.folder}: is a file; give a folder for the run")
        if (self.folder / RUN_FILE).is_file():
            raise OutputExists(
                f"{self.folder}: holds a run already; pass --resume to continue it, or choose "
                "a new folder"
            )
        if self.folder.is_dir() and any(self.folder.iterdir()):
            raise OutputExists(
                f"{self.folder}: exists and holds files; a run needs a new or empty folder"
            )
        if not self.folder.parent.is_dir():
            raise OutputNotWritable(f"{self.folder}: {self.folder.parent} does not exist")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / RUN_FILE, {"format": FORMAT, **description})

    def description(self) -> dict[str, Any]:
        """run.json of a run to continue; BadInput when there is none."""
        path = self.folder / RUN_FILE
        if not path.is_file():
            raise BadInput(
                f"{self.folder}: no run to resume (no {RUN_FILE}); start one without --resume"
            )
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise BadInput(f"{path}: not a vidrefine training run")
        return data

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint (a partial one left by a kill is never read)."""
        found = self.complete()
        return found[-1] if found else None

    def complete(self) -> list[Checkpoint]:
        """Every complete checkpoint, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for entry in self.checkpoints.iterdir():
            match = _STEP.match(entry.name)
            if match and (entry / STATE).is_file():
                found.append(Checkpoint(entry, int(match.group(1))))
        return sorted(found, key=lambda c: c.step)

    def remove_partial(self) -> list[Path]:
        """Remove checkpoint folders a killed run was writing (ours by name and place)."""
        removed = []
        if self.checkpoints.is_dir():
            for entry in self.checkpoints.iterdir():
                if _PARTIAL.match(entry.name) and entry.is_dir():
                    shutil.rmtree(entry)
                    removed.append(entry)
        return removed

    def save(
        self,
        step: int,
        weights: Mapping[str, torch.Tensor],
        optimizer: Mapping[str, Any],
        state: Mapping[str, Any],
        keep: int,
    ) -> Checkpoint:
        """Write checkpoint `step` atomically, then drop all but the newest `keep`."""
        final = self.checkpoints / f"step-{step:06d}"
        if (final / STATE).is_file():
            return Checkpoint(final, step)  # this step is saved (its numbers are the same)
        partial = self.checkpoints / f".step-{step:06d}.partial-{os.getpid()}"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        try:
            save_safetensors({k: v.contiguous() for k, v in weights.items()}, partial / WEIGHTS, {})
            torch.save(dict(optimizer), partial / OPTIMIZER)
            (partial / STATE).write_text(json.dumps({"step": step, **state}, sort_keys=True))
            os.rename(partial, final)  # a complete checkpoint appears at once, or not at all
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        for old in self.complete()[:-keep] if keep > 0 else []:
            shutil.rmtree(old.path)
        return Checkpoint(final, step)

    @staticmethod
    def load(
        checkpoint: Checkpoint,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """(trainable weights, optimizer and RNG states, state.json) of a checkpoint."""
        from safetensors.torch import load_file

        weights = load_file(str(checkpoint.path / WEIGHTS))
        optimizer = torch.load(checkpoint.path / OPTIMIZER, map_location="cpu", weights_only=True)
        state = json.loads((checkpoint.path / STATE).read_text())
        return weights, optimizer, state

    def truncate_metrics(self, step: int) -> None:
        """Drop metrics lines past `step` (a resumed run writes them again)."""
        path = self.folder / METRICS
        if not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
        with atomic_output(path, overwrite=True) as temp:
            temp.write_text("".join(line + "\n" for line in kept))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """One line of metrics.jsonl (flushed, so a kill loses at most the line being written)."""
        with open(self.folder / METRICS, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl."""
        path = self.folder / METRICS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
