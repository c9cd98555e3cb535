"""What a run hands on: its adapter (LoRA) or its weights (full), and `tune export --merge`.

`RUN/adapter.safetensors` is an adapter file (`train.lora`, peft's keys and config) with
`adapter_config.json` beside it; a full run writes `RUN/stage2-tuned.safetensors`. Export
writes a whole stage-II DiT with the adapter merged: `.safetensors` in vidrefine's DiT format
(what `vidrefine convert` writes) or `.pt` in the official format (`{"module": ...}`), loadable
wherever `stage2.pt` is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from vidrefine.checkpoints.common import save_safetensors
from vidrefine.checkpoints.dit import FORMAT_TAG as DIT_FORMAT
from vidrefine.config import DiTConfig
from vidrefine.errors import BadInput
from vidrefine.io.atomic import atomic_output, check_output
from vidrefine.train.lora import apply_lora, save_adapter
from vidrefine.train.model import EMBEDDINGS, TrainableDiT

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"  # peft's name for the config beside the weights
FULL_FILE = "stage2-tuned.safetensors"
_LORA_KEY = ".lora_{}.default.weight"


def save_dit(tensors: Mapping[str, torch.Tensor], config: DiTConfig, path: Path) -> None:
    """A DiT in vidrefine's safetensors format (as `convert_dit` writes) at `path`."""
    meta = {"vidrefine_format": DIT_FORMAT, "config": json.dumps(dataclasses.asdict(config))}
    save_safetensors(tensors, path, meta)


def save_official(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """A DiT in the official format ({"module": {model.diffusion_model.<official key>}})."""
    from vidrefine.checkpoints.dit import OFFICIAL_PREFIX
    from vidrefine.checkpoints.dit_keys import to_official

    module = {OFFICIAL_PREFIX + to_official(k): v.contiguous() for k, v in tensors.items()}
    torch.save({"module": module}, path)


def write_outputs(folder: Path, trainable: TrainableDiT, weights: Mapping[str, torch.Tensor]):
    """The run's adapter (or full weights) from a checkpoint's trainable `weights`."""
    if trainable.settings.full:
        with atomic_output(folder / FULL_FILE, overwrite=True) as temp:
            save_dit(weights, trainable.module.config, temp)
        return folder / FULL_FILE
    pairs = {
        name: (weights[name + _LORA_KEY.format("A")], weights[name + _LORA_KEY.format("B")])
        for name in trainable.adapted
    }
    modules = {k: v for k, v in weights.items() if k.split(".")[0] in EMBEDDINGS}
    config = trainable.adapter_config("stage2.pt")
    with atomic_output(folder / ADAPTER_FILE, overwrite=True) as temp:
        save_adapter(temp, pairs, modules, config)
    with atomic_output(folder / ADAPTER_CONFIG, overwrite=True) as temp:
        temp.write_text(json.dumps(dataclasses.asdict(config), indent=1) + "\n")
    return folder / ADAPTER_FILE


def export_run(run: Path, out: Path, *, stage2: Path, overwrite: bool = False) -> Path:
    """Write the run's tuned DiT, adapter merged into `stage2`, at `out` (.safetensors / .pt).

    Raises:
        BadInput: `run` holds no adapter or tuned weights, or `out` has another suffix.
        OutputExists: `out` exists and `overwrite` is False.
        BadCheckpoint: the adapter does not fit `stage2` (another base model).
    """
    from vidrefine.checkpoints.dit import load_dit

    if out.suffix not in (".safetensors", ".pt"):
        raise BadInput(f"{out}: export a .safetensors (vidrefine) or .pt (official) file")
    check_output(None, out, overwrite=overwrite)
    adapter, full = run / ADAPTER_FILE, run / FULL_FILE
    if full.is_file():
        dit = load_dit(full, None, stage=2)
    elif adapter.is_file():
        dit = apply_lora(load_dit(stage2, None, stage=2), adapter, 1.0)
    else:
        raise BadInput(f"{run}: no {ADAPTER_FILE} or {FULL_FILE}; train it with tune train first")
    tensors = dit.state_dict()
    with atomic_output(out, overwrite=overwrite) as temp:
        if out.suffix == ".pt":
            save_official(tensors, temp)
        else:
            save_dit(tensors, dit.config, temp)
    return out
