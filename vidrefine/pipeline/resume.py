"""Resumable runs: finished windows are kept on disk under a key of the input and the settings.

A rerun after a crash or Ctrl-C finds the same key and reuses every finished window; the folder is
removed once the output is complete. Windows are written to a temporary name and renamed, so a
window file normally either is complete or does not exist; one that cannot be read anyway (a
full disk, a crash of the file system, an edit) is dropped with a warning and computed again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vidrefine.checkpoints.weights import vidrefine_cache
from vidrefine.config import RunConfig
from vidrefine.errors import DiskFull, is_disk_full
from vidrefine.pipeline.steps import NOISE_STREAMS
from vidrefine.plan.clip import ClipPlan

_PROBE_BYTES = 1 << 20  # hash the first and last MiB plus size and mtime: cheap for big files
WINDOW_TENSORS = ("latents", "trajectory")  # what a kept window holds


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
    """Finished windows of one run, as safetensors files in `root/key/`.

    `warn` receives one line for each kept window that cannot be read (it is then dropped).
    """

    def __init__(
        self, key: str, root: Path | None = None, *, warn: Callable[[str], None] | None = None
    ) -> None:
        self.folder = (root or cache_root()) / key
        self.warn = warn or (lambda message: None)

    def _window_path(self, index: int) -> Path:
        return self.folder / f"window_{index:05d}.safetensors"

    def load_window(self, index: int) -> dict[str, torch.Tensor] | None:
        """The tensors saved for window `index`, or None when it has not finished.

        A file that cannot be read, or lacks a tensor, is removed with a warning and counts as
        not finished, so the window is computed again.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._window_path(index)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            missing = [name for name in WINDOW_TENSORS if name not in tensors]
            if missing:
                raise ValueError(f"no {', '.join(missing)} in it")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            self.warn(
                f"window {index + 1}: the copy kept from an earlier run cannot be read "
                f"({path.name}: {reason}); it is dropped and computed again"
            )
            path.unlink(missing_ok=True)
            return None
        return tensors

    def save_window(self, index: int, tensors: Mapping[str, torch.Tensor]) -> None:
        """Save window `index` atomically (temporary file, then rename).

        A full disk (or quota) raises DiskFull naming the folder and the space one window
        needs; the temporary file is removed and the windows kept earlier stay as they are.
        """
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        final = self._window_path(index)
        tmp = final.with_suffix(".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp))
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a half-written window must not take the space it has
            if not is_disk_full(exc):
                raise
            need_mb = max(1, math.ceil(sum(t.nbytes for t in tensors.values()) / 1e6))
            kept = len(list(self.folder.glob("window_*.safetensors")))
            raise DiskFull(
                f"no space left in {self.folder} to keep window {index + 1} (about {need_mb} MB "
                f"needed for one window's latents); free at least {need_mb} MB there or set "
                f"VIDREFINE_CACHE to a folder with room, then run the same command again "
                f"({kept} finished window{'' if kept == 1 else 's'} kept)"
            ) from exc

    def clear(self) -> None:
        """Remove the job folder (after the output is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)


# knobs that change the output file but not the sampled latents, or that act through the plan
_NON_NUMERIC_KNOBS = {
    "codec",
    "pix_fmt",
    "crf",
    "encoder_preset",
    "audio",
    "fps_mode",
    "background_io",
    "vram_gb",
    "offload",
}


def adapter_scales(lora: Sequence[str]) -> list[float]:
    """What of `RunConfig.lora` keys a resume besides the files: each adapter's scale, in order.

    The adapter files themselves are in the weights identity by content (`with_adapters`,
    `file_identity`), so the same adapter named by a relative or an absolute path, or through
    a link, is the same run.
    """
    from vidrefine.train.lora import parse_lora_spec

    return [parse_lora_spec(spec)[1] for spec in lora]


def resume_key(
    config: RunConfig,
    identity: dict,
    plan: ClipPlan,
    weights_identity: dict,
    dtypes: tuple[torch.dtype, torch.dtype],
) -> str:
    """Resume key: `identity` (input and caption), the knobs and plan parts that change the
    numbers, the weights, the precisions (`dtypes`: DiT, VAE) and how noise seeds are derived
    (windows kept by a release with other noise are not mixed into this run).
    """
    numbers = {k: v for k, v in asdict(config).items() if k not in _NON_NUMERIC_KNOBS}
    numbers["lora"] = adapter_scales(config.lora)
    decisions = {"geometry": asdict(plan.geometry), "vae": asdict(plan.vae)}
    return job_key(
        {
            **identity,
            "config": numbers,
            "plan": {**decisions, "cfg_batched": plan.memory.cfg_batched},
            "weights": weights_identity,
            "dtype": str(dtypes[0]),
            "vae_dtype": str(dtypes[1]),
            "noise": NOISE_STREAMS,
        }
    )
