"""Reading weight files (official .pt, safetensors, diffusers folders) and strict loading.

Every model loader in this package goes through `read_checkpoint` and `load_strict`, so the error
messages for a truncated file or a wrong key set read the same for every model.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidrefine.checkpoints.weights import refetch_hint
from vidrefine.errors import BadCheckpoint, MissingWeights, first_line

# The official FlashVideo files wrap their tensors: stage{1,2}.pt in "module", 3d-vae.pt in
# "state_dict" (flashvideo-spec §8.1).
_WRAPPER_KEYS = ("module", "state_dict")
_MAX_KEYS_SHOWN = 8
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # the class torch's weights-only unpickler refused


@dataclass
class RawCheckpoint:
    """Tensors read from one file or folder, before any key mapping."""

    tensors: dict[str, torch.Tensor]
    format: str  # "pt" | "safetensors" | "diffusers"
    path: Path
    config: dict[str, Any] = field(default_factory=dict)  # diffusers config.json, if any
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read a weight file or diffusers folder into CPU tensors (memory-mapped where possible)."""
    path = Path(path)
    if not path.exists():
        raise MissingWeights(f"weight file not found: {path}")
    if path.is_dir():
        return _read_diffusers_folder(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch_file(path)


def _read_torch_file(path: Path) -> RawCheckpoint:
    """Tensors of a torch.save file, loaded with weights_only=True (no code from the file runs).

    Errors are one line that names the file and how to get it again. Torch's own advice for a
    pickle that holds Python objects (load with weights_only=False, which runs the file's code)
    is never passed on.
    """
    if path.stat().st_size == 0:
        raise BadCheckpoint(
            f"{path} is empty (0 bytes: a download or copy that did not finish); "
            f"{refetch_hint(path)}"
        )
    if not zipfile.is_zipfile(path):
        raise BadCheckpoint(
            f"{path} is not a PyTorch checkpoint (truncated or not a zip archive); "
            f"{refetch_hint(path)}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler refused the pickle
        found = _GLOBAL.search(str(exc))
        what = f"Python objects ({found.group(1)})" if found else "Python objects or damage"
        raise BadCheckpoint(
            f"{path} is not a checkpoint vidrefine can read: besides tensors it holds {what}, "
            "and vidrefine never runs code from a weight file; use the official file "
            f"({refetch_hint(path)}) or save a plain dictionary of tensors"
        ) from exc
    except Exception as exc:  # torch raises several types for damaged archives
        reason = _first_line(exc)
        raise BadCheckpoint(
            f"{path} could not be read as a PyTorch checkpoint ({reason}); {refetch_hint(path)}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadCheckpoint(
            f"{path} holds no tensor dictionary (expected 'module' or 'state_dict')"
        )
    return RawCheckpoint(dict(obj), "pt", path)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without torch's advice to unpickle anyway."""
    text = first_line(exc)
    return "damaged archive" if "weights_only" in text else text


def _read_safetensors(path: Path) -> RawCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadCheckpoint(f"{path} could not be read as safetensors: {exc}") from exc
    return RawCheckpoint(tensors, "safetensors", path, metadata=metadata)


def _read_diffusers_folder(path: Path) -> RawCheckpoint:
    config_path = path / "config.json"
    files = sorted(path.glob("*.safetensors"))
    if not config_path.is_file() or not files:
        raise BadCheckpoint(
            f"{path} is a folder but not a diffusers model (config.json + *.safetensors)"
        )
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(_read_safetensors(file).tensors)
    config = json.loads(config_path.read_text())
    return RawCheckpoint(tensors, "diffusers", path, config=config)


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str]
) -> None:
    """Write `tensors` as safetensors (contiguous copies; no pickle) with string `metadata`."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def key_list(keys: list[str]) -> str:
    """Keys for an error message: the first few, then how many more."""
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def load_strict(
    build: Callable[[], nn.Module], tensors: Mapping[str, torch.Tensor], *, what: str
) -> nn.Module:
    """Build a module on the meta device and assign `tensors` to it; fail naming every bad key.

    Modules must hold no buffers (compute constant tables in forward) so that nothing stays on meta.
    """
    with torch.device("meta"):
        module = build()
    expected = dict(module.state_dict())
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {key_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {key_list(unexpected)}")
    wrong_shape = sorted(
        k
        for k in set(expected) & set(tensors)
        if tuple(expected[k].shape) != tuple(tensors[k].shape)
    )
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} with wrong shape: {key_list(wrong_shape)}")
    if problems:
        raise BadCheckpoint(f"{what}: " + "; ".join(problems))
    module.load_state_dict(dict(tensors), strict=True, assign=True)
    return module
