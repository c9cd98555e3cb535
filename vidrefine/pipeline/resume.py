"""Resumable runs: finished windows are kept on disk under a key of the input and the settings.

A rerun after a crash or Ctrl-C finds the same key and reuses every finished window; the folder is
removed once the output is complete. Windows are written to a temporary name and renamed, so a
window file either is complete or does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vidrefine.checkpoints.weights import vidrefine_cache

_PROBE_BYTES = 1 << 20  # hash the first and last MiB plus size and mtime: cheap for big files


def cache_root() -> Path:
    """Where job folders live: $VIDREFINE_CACHE, else the per-user cache folder."""
    explicit = os.environ.get("VIDREFINE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return vidrefine_cache("jobs")


def file_identity(path: Path) -> dict[str, Any]:
    """A cheap fingerprint of a file: size, mtime and a hash of its head and tail."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(_PROBE_BYTES))
        if stat.st_size > _PROBE_BYTES:
            f.seek(max(_PROBE_BYTES, stat.st_size - _PROBE_BYTES))
            digest.update(f.read(_PROBE_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def files_identity(paths: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """`file_identity` of each file in `paths` (folders, such as T5's, are left out)."""
    return {name: file_identity(Path(p)) for name, p in paths.items() if Path(p).is_file()}


def job_key(parts: Mapping[str, Any]) -> str:
    """Stable key of everything that changes the numbers of a run (JSON-serialisable parts)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


class JobStore:
    """Finished windows of one run, as safetensors files in `root/key/`."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.folder = (root or cache_root()) / key

    def _window_path(self, index: int) -> Path:
        return self.folder / f"window_{index:05d}.safetensors"

    def load_window(self, index: int) -> dict[str, torch.Tensor] | None:
        """The tensors saved for window `index`, or None when it has not finished."""
        from safetensors.torch import load_file

        path = self._window_path(index)
        return load_file(str(path)) if path.is_file() else None

    def save_window(self, index: int, tensors: Mapping[str, torch.Tensor]) -> None:
        """Save window `index` atomically (temporary file, then rename)."""
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        final = self._window_path(index)
        tmp = final.with_suffix(".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, final)

    def clear(self) -> None:
        """Remove the job folder (after the output is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)
