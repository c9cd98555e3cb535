"""A `vidrefine tune` adapter in kohya's LoRA convention, the one ComfyUI video wrappers merge.

Per adapted linear: `lora_unet_<module, dots as underscores>.lora_down.weight` (A, (r, in)),
`.lora_up.weight` (B, (out, r)) and `.alpha`, so a loader adds strength * alpha / r * up @ down
to the weight. The modules tune trained whole (the stage-II embeddings), which no low-rank pair
holds, are ComfyUI's whole-tensor differences from the base model: `.diff` (weight) and
`.diff_b` (bias). Module names are the diffusers model's (`transformer_blocks.N.attn.qkv`,
`FlashVideoTransformer3DModel`). Needs no diffusers: only the names are diffusers'.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from vidrefine.diffusers.names import diffusers_key
from vidrefine.errors import BadCheckpoint, BadInput
from vidrefine.train.lora import Adapter

KOHYA_PREFIX = "lora_unet_"
_DIFFS = {"weight": "diff", "bias": "diff_b"}  # ComfyUI's keys of a whole-tensor difference


def kohya_name(module: str) -> str:
    """The kohya name of a `VideoDiT` module: `lora_unet_` + its diffusers name, `.` as `_`."""
    return KOHYA_PREFIX + diffusers_key(module).replace(".", "_")


def _claim(out: dict[str, torch.Tensor], key: str, value: torch.Tensor, source: str) -> None:
    """Put `value` at `key`, refusing a second module that kohya's naming makes the same."""
    if key in out:
        raise BadCheckpoint(f"{source}: two modules are both {key} in kohya's names")
    out[key] = value.detach().contiguous()


def to_kohya(adapter: Adapter, base: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter's tensors in kohya's keys; whole modules as differences from `base`.

    `base` is the state dict of the `VideoDiT` the adapter was trained on.
    """
    source = adapter.path.name
    out: dict[str, torch.Tensor] = {}
    alpha = torch.tensor(float(adapter.config.lora_alpha))
    for name, (a, b) in sorted(adapter.pairs.items()):
        stem = kohya_name(name)
        _claim(out, f"{stem}.lora_down.weight", a, source)
        _claim(out, f"{stem}.lora_up.weight", b, source)
        _claim(out, f"{stem}.alpha", alpha.clone(), source)
    for key, tuned in sorted(adapter.modules.items()):
        module, _, parameter = key.rpartition(".")
        if parameter not in _DIFFS:
            raise BadCheckpoint(f"{source}: {key} is neither a weight nor a bias")
        difference = tuned.float() - base[key].float()
        _claim(out, f"{kohya_name(module)}.{_DIFFS[parameter]}", difference, source)
    return out


def kohya_metadata(adapter: Adapter) -> dict[str, str]:
    """What kohya's trainers write about a LoRA, plus the base model it belongs to."""
    config = adapter.config
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.r),
        "ss_network_alpha": f"{config.lora_alpha:g}",
        "ss_base_model_version": "flashvideo_stage2",
        "vidrefine_base_model_fingerprint": config.base_model_fingerprint,
        "vidrefine_module_names": "FlashVideoTransformer3DModel",
    }


def check_kohya_job(adapter_path: str | Path, out: str | Path, *, overwrite: bool) -> Adapter:
    """Read the adapter and check `out` before the base weights are found or read.

    Raises:
        BadInput: `out` is not a .safetensors file.
        OutputExists: `out` exists and `overwrite` is False.
        MissingWeights, BadCheckpoint: no adapter file, or not an adapter.
    """
    from vidrefine.io.atomic import check_output
    from vidrefine.train.lora import read_adapter

    if Path(out).suffix != ".safetensors":
        raise BadInput(f"{out}: a kohya LoRA is a .safetensors file")
    check_output(adapter_path, out, overwrite=overwrite)
    return read_adapter(adapter_path)


def export_kohya(
    adapter: Adapter, out: str | Path, *, stage2: Path, overwrite: bool = False
) -> Path:
    """Write `adapter` (as `check_kohya_job` read it) as kohya's LoRA file `out`.

    The adapter is checked against `stage2` (its fingerprint and every shape) before anything
    is written; `out` is written to a temporary file and renamed when complete.

    Raises:
        BadCheckpoint: the adapter was trained on another base model.
        OutputExists: `out` appeared meanwhile and `overwrite` is False.
    """
    from vidrefine.checkpoints.common import save_safetensors
    from vidrefine.checkpoints.dit import load_dit
    from vidrefine.io.atomic import atomic_output
    from vidrefine.train.lora import _check_fits, weights_fingerprint

    base = load_dit(stage2, None, stage=2)
    _check_fits(adapter, base, weights_fingerprint(base))
    tensors = to_kohya(adapter, base.state_dict())
    with atomic_output(out, overwrite=overwrite) as temp:
        save_safetensors(tensors, temp, kohya_metadata(adapter))
    return Path(out)


__all__ = [
    "KOHYA_PREFIX",
    "check_kohya_job",
    "export_kohya",
    "kohya_metadata",
    "kohya_name",
    "to_kohya",
]
