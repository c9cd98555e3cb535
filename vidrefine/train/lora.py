"""Tuned adapters as files: the peft key convention, their config, and applying them to a DiT.

An adapter file is safetensors with peft's keys (`base_model.model.<module>.lora_A.weight`
(r, in) and `...lora_B.weight` (out, r) per adapted linear; the stage-II embeddings it trained,
whole, as `base_model.model.<module>.<parameter>`, peft's `modules_to_save`), and its config in
the metadata: rank, alpha, targets, and the fingerprint of the base model it was trained on.
Applying needs no peft: the update W + s (alpha / r) B A is merged into the weights, so an
adapted model runs as fast as the base, and scale 0 leaves the base model exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidrefine.checkpoints.common import read_checkpoint, save_safetensors
from vidrefine.errors import BadCheckpoint, BadInput

FORMAT_TAG = "lora"  # safetensors metadata "vidrefine_format"
PEFT_PREFIX = "base_model.model."
SAMPLES_PER_TENSOR = 64  # values of each weight the fingerprint reads


@dataclass(frozen=True)
class AdapterConfig:
    """What an adapter is: peft's LoraConfig fields plus the base model it belongs to."""

    r: int
    lora_alpha: float
    target_modules: list[str]  # the adapted linears, by module name
    modules_to_save: list[str] = field(default_factory=list)  # trained whole
    base_model_fingerprint: str = ""
    base_model_name_or_path: str = ""
    peft_type: str = "LORA"

    @property
    def scaling(self) -> float:
        """The factor of B A: alpha / r (peft's `scaling`)."""
        return self.lora_alpha / self.r


@dataclass
class Adapter:
    """An adapter read from a file: per linear (A (r, in), B (out, r)), whole modules' tensors."""

    path: Path
    config: AdapterConfig
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    modules: dict[str, torch.Tensor]  # "<module>.<parameter>" -> tensor


def weights_fingerprint(model: nn.Module) -> str:
    """16 hex digits that tell base models apart: a sample of every weight, read as bf16.

    bf16 sampling makes the fingerprint the same whatever precision the model was loaded in
    (a bf16 file loaded as fp32, or fp32 weights cast to bf16), and any training step or merged
    adapter changes it.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        sample = flat[::step][:SAMPLES_PER_TENSOR].to("cpu", torch.bfloat16).float()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def adapter_tensors(
    pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]], modules: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Tensors under peft's saved keys."""
    tensors = {}
    for name, (a, b) in pairs.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b
    for key, value in modules.items():
        tensors[PEFT_PREFIX + key] = value
    return tensors


def save_adapter(
    path: Path,
    pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    modules: Mapping[str, torch.Tensor],
    config: AdapterConfig,
) -> None:
    """Write an adapter file (to a path of ours: callers write through `atomic_output`)."""
    tensors = adapter_tensors(pairs, modules)
    tensors = {k: v.detach().to("cpu", torch.float32) for k, v in tensors.items()}
    metadata = {"vidrefine_format": FORMAT_TAG, "adapter_config": json.dumps(asdict(config))}
    save_safetensors(tensors, path, metadata)


def _config_of(raw_metadata: Mapping[str, str], path: Path) -> AdapterConfig:
    if raw_metadata.get("vidrefine_format") != FORMAT_TAG:
        raise BadCheckpoint(f"{path} is not a vidrefine LoRA adapter (written by tune train)")
    try:
        fields = json.loads(raw_metadata["adapter_config"])
        return AdapterConfig(**fields)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(f"{path}: unreadable adapter config ({exc})") from exc


def read_adapter(path: str | Path) -> Adapter:
    """Read and check an adapter file.

    Raises:
        MissingWeights: no such file.
        BadCheckpoint: not an adapter, or tensors of another rank than its config says.
    """
    raw = read_checkpoint(path)
    config = _config_of(raw.metadata, raw.path)
    pairs, modules = {}, {}
    for name in config.target_modules:
        a = raw.tensors.get(f"{PEFT_PREFIX}{name}.lora_A.weight")
        b = raw.tensors.get(f"{PEFT_PREFIX}{name}.lora_B.weight")
        if a is None or b is None:
            raise BadCheckpoint(f"{raw.path}: the adapter of {name} is missing")
        if a.shape[0] != config.r or b.shape[1] != config.r:
            raise BadCheckpoint(
                f"{raw.path}: {name} has rank {a.shape[0]}, the adapter's config says "
                f"{config.r} (a damaged or hand-edited file)"
            )
        pairs[name] = (a, b)
    prefixes = tuple(f"{PEFT_PREFIX}{m}." for m in config.modules_to_save)
    for key, value in raw.tensors.items():
        if key.startswith(prefixes):
            modules[key[len(PEFT_PREFIX) :]] = value
    return Adapter(raw.path, config, pairs, modules)


def _check_fits(adapter: Adapter, dit: nn.Module, fingerprint: str) -> None:
    """BadCheckpoint unless `adapter` was trained on this base model and its shapes fit."""
    wanted = adapter.config.base_model_fingerprint
    if wanted and wanted != fingerprint:
        raise BadCheckpoint(
            f"{adapter.path.name} was trained on another base model (fingerprint {wanted}, this "
            f"one's is {fingerprint}); apply it to the stage2 weights it was tuned from"
        )
    for name, (a, b) in adapter.pairs.items():
        try:
            layer = dit.get_submodule(name)
        except AttributeError:
            raise BadCheckpoint(f"{adapter.path.name}: this DiT has no layer {name}") from None
        if not isinstance(layer, nn.Linear) or (b.shape[0], a.shape[1]) != tuple(
            layer.weight.shape
        ):
            raise BadCheckpoint(
                f"{adapter.path.name}: {name} is {b.shape[0]}x{a.shape[1]}, the DiT's "
                f"{tuple(layer.weight.shape)}: an adapter for a model of another size"
            )
    state = dit.state_dict()
    for key, value in adapter.modules.items():
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise BadCheckpoint(f"{adapter.path.name}: {key} does not fit this DiT")


@torch.no_grad()
def merge_adapter(dit: nn.Module, adapter: Adapter, scale: float) -> None:
    """Add `scale` times the adapter's update to the weights of `dit`, in place (fp32 math)."""
    for name, (a, b) in adapter.pairs.items():
        weight = dit.get_submodule(name).weight
        delta = (b.double() @ a.double()) * (scale * adapter.config.scaling)
        weight.copy_((weight.double() + delta.to(weight.device)).to(weight.dtype))
    state = dict(dit.named_parameters())
    for key, tuned in adapter.modules.items():
        base = state[key]
        moved = base.double() + scale * (tuned.to(base.device).double() - base.double())
        base.copy_(moved.to(base.dtype))


def parse_lora_spec(spec: str) -> tuple[Path, float]:
    """`FILE[:SCALE]` (the `--lora` option) -> (path, scale); the scale defaults to 1."""
    path, sep, scale = spec.rpartition(":")
    try:
        value = float(scale) if sep and path else None
    except ValueError:
        value = None  # a ':' that belongs to the file name
    if value is None:
        return Path(spec), 1.0
    if not -10.0 <= value <= 10.0:
        raise BadInput(f"--lora {spec}: the scale {value:g} is not between -10 and 10")
    return Path(path), value


def apply_loras(dit: nn.Module, specs: Sequence[tuple[str | Path, float]]) -> nn.Module:
    """Merge each (adapter file, scale) into `dit`, in place, and return it.

    Every adapter is read and checked against the unmerged base first (its fingerprint,
    every shape), so nothing is merged unless all fit. Scale 0 leaves the weights untouched.
    Apply before the model is compiled or its blocks streamed.

    Raises:
        MissingWeights: a file is missing.
        BadCheckpoint: not an adapter, of another rank than it says, for another base model.
    """
    adapters = [(read_adapter(path), float(scale)) for path, scale in specs]
    if not adapters:
        return dit
    fingerprint = weights_fingerprint(dit)
    for adapter, _ in adapters:
        _check_fits(adapter, dit, fingerprint)
    for adapter, scale in adapters:
        if scale != 0.0:
            merge_adapter(dit, adapter, scale)
    return dit


def apply_lora(dit: nn.Module, path: str | Path, scale: float = 1.0) -> nn.Module:
    """Merge one adapter file into `dit` at `scale` (see `apply_loras`)."""
    return apply_loras(dit, [(path, scale)])


def describe(adapter: Adapter) -> dict[str, Any]:
    """The adapter's config as a dict (adapter_config.json beside the file)."""
    return asdict(adapter.config)
