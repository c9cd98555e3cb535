"""VAE weight files -> `CausalVideoVAE`: official 3d-vae.pt, diffusers folders, own safetensors.

Our parameter names are the official ones (spec §8.3), so the official file needs no renaming; a
diffusers folder is mapped back with `from_diffusers_name` (its decoder levels are numbered in
reverse). The architecture is inferred from tensor shapes, so any size loads through one path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vidrefine.checkpoints.common import load_strict, read_checkpoint, save_safetensors
from vidrefine.config import VAEConfig, from_dict
from vidrefine.errors import BadCheckpoint, BadInput, OutputExists
from vidrefine.models.vae import CausalVideoVAE

FORMAT_TAG = "vae"  # safetensors metadata "vidrefine_format"
_DIT_PREFIXES = ("model.diffusion_model.", "mixins.", "transformer.layers.")
_DIFFUSERS_LEVEL = re.compile(r"^decoder\.up_blocks\.\d+\.resnets\.0\.conv1\.conv\.weight$")
_REQUIRED = ("encoder.conv_in.conv.weight", "encoder.conv_out.conv.weight")

# diffusers name pattern -> official name template; {level} is levels-1-k for `up_blocks.k`
_FROM_DIFFUSERS: tuple[tuple[str, str], ...] = (
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.mid.block_1."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.mid.block_2."),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.", "decoder.up.{level}.block."),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", "decoder.up.{level}.upsample."),
    (r"\.conv_shortcut\.", ".nin_shortcut."),
)


def from_diffusers_name(name: str, levels: int) -> str:
    """Official name of diffusers parameter `name`; decoder `up_blocks.k` is level levels-1-k."""
    for pattern, template in _FROM_DIFFUSERS:
        match = re.search(pattern, name)
        if match is None:
            continue
        if "{level}" in template:
            template = template.format(level=levels - 1 - int(match.group(1)))
        name = re.sub(pattern, template, name)
    return name


_LEVEL = re.compile(r"^encoder\.down\.(\d+)\.")
_BLOCK = re.compile(r"^encoder\.down\.\d+\.block\.(\d+)\.")
_RESNET_CONV = re.compile(r"^encoder\.down\.(\d+)\.block\.\d+\.conv[12]\.conv\.weight$")


def _max_index(tensors: Mapping[str, torch.Tensor], pattern: re.Pattern) -> int:
    found = [int(m.group(1)) for k in tensors if (m := pattern.match(k))]
    return max(found, default=-1)


def _level_width(tensors: Mapping[str, torch.Tensor], level: int) -> int:
    """Output width of encoder level `level`: any of its resnet convs has it as dim 0."""
    for key in sorted(tensors):
        match = _RESNET_CONV.match(key)
        if match and int(match.group(1)) == level:
            return int(tensors[key].shape[0])
    raise BadCheckpoint(f"not a VAE checkpoint: no resnet conv weights under encoder.down.{level}")


def infer_vae_config(tensors: Mapping[str, torch.Tensor], base: VAEConfig) -> VAEConfig:
    """Read widths, resnets per level and latent channels from shapes; the rest from `base`."""
    missing = [k for k in _REQUIRED if k not in tensors]
    if missing:
        raise BadCheckpoint(f"not a VAE checkpoint: missing {', '.join(missing)}")
    levels = _max_index(tensors, _LEVEL) + 1
    layers = _max_index(tensors, _BLOCK) + 1
    if levels < 1 or layers < 1:
        raise BadCheckpoint("not a VAE checkpoint: no encoder.down.{i}.block.{j}.* keys")
    widths = [_level_width(tensors, i) for i in range(levels)]
    conv_in = tensors["encoder.conv_in.conv.weight"]
    return VAEConfig(
        block_out_channels=tuple(int(w) for w in widths),
        layers_per_block=layers,
        latent_channels=int(tensors["encoder.conv_out.conv.weight"].shape[0]) // 2,
        in_channels=int(conv_in.shape[1]),
        norm_groups=base.norm_groups,
        norm_eps=base.norm_eps,
        time_compress_levels=min(base.time_compress_levels, len(widths) - 1),
    )


def _looks_like_dit(keys: list[str]) -> bool:
    return any(k.startswith(_DIT_PREFIXES) for k in keys)


def _diffusers_base(config: Mapping[str, Any]) -> VAEConfig:
    ratio = int(config.get("temporal_compression_ratio", 4))
    return VAEConfig(
        norm_groups=int(config.get("norm_num_groups", 32)),
        norm_eps=float(config.get("norm_eps", 1e-6)),
        time_compress_levels=max(ratio.bit_length() - 1, 0),
    )


def read_vae_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], VAEConfig]:
    """Tensors under official names and the architecture, from any supported VAE format."""
    raw = read_checkpoint(path)
    keys = sorted(raw.tensors)
    if _looks_like_dit(keys):
        raise BadCheckpoint(
            f"{raw.path} looks like a stage checkpoint (DiT keys such as "
            f"{next(k for k in keys if k.startswith(_DIT_PREFIXES))}), not a VAE; "
            "pass 3d-vae.pt as the VAE and stage1.pt/stage2.pt as the DiT"
        )
    tag = raw.metadata.get("vidrefine_format")
    if tag is not None and tag != FORMAT_TAG:
        raise BadCheckpoint(f"{raw.path} is a vidrefine '{tag}' file, not a VAE")
    base = VAEConfig()
    tensors = {k: v for k, v in raw.tensors.items() if not k.startswith("loss")}
    if raw.format == "diffusers":
        base = _diffusers_base(raw.config)
        levels = sum(1 for k in tensors if _DIFFUSERS_LEVEL.match(k))
        tensors = {from_diffusers_name(k, levels): v for k, v in tensors.items()}
    elif tag == FORMAT_TAG:
        try:
            base = from_dict(VAEConfig, _config_from_json(raw.metadata["config"]), source=str(path))
        except (KeyError, ValueError, TypeError) as exc:
            raise BadCheckpoint(f"{raw.path}: unreadable VAE config in metadata ({exc})") from exc
    config = infer_vae_config(tensors, base)
    return tensors, config


def _config_from_json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    data["block_out_channels"] = tuple(data["block_out_channels"])
    return data


def load_vae(
    path: str | Path, *, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
) -> CausalVideoVAE:
    """Build a `CausalVideoVAE` from 3d-vae.pt, a diffusers VAE folder or a `convert_vae` file.

    Raises:
        MissingWeights: `path` does not exist.
        BadCheckpoint: truncated file, a DiT checkpoint, or missing/unexpected/misshapen keys.
    """
    tensors, config = read_vae_weights(path)
    vae = load_strict(lambda: CausalVideoVAE(config), tensors, what=f"VAE {path}")
    return vae.to(device=device, dtype=dtype).eval()


def convert_vae(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> VAEConfig:
    """Write `src` (any format `load_vae` reads) as vidrefine VAE safetensors at `dst`."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise BadInput(f"{dst}: the converted VAE must be a .safetensors file")
    if dst.exists() and not overwrite:
        raise OutputExists(f"{dst} exists; pass --overwrite to replace it")
    tensors, config = read_vae_weights(src)
    vae = load_strict(lambda: CausalVideoVAE(config), tensors, what=f"VAE {src}")
    metadata = {"vidrefine_format": FORMAT_TAG, "config": json.dumps(asdict(config))}
    save_safetensors(vae.state_dict(), dst, metadata)
    return config
