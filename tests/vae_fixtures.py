"""Tiny VAE checkpoints in the OFFICIAL 3d-vae.pt layout, keys transcribed from spec §8.3.

The key list is built here from the spec's description of the structure, independently of
vidrefine's loader, so a naming bug in the loader cannot cancel itself out in a test.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_WIDTHS = (32, 64, 64, 128)  # keeps every code path of (128, 256, 256, 512)
LATENT = 16


def _conv3(out_ch: int, in_ch: int, k: int) -> tuple[int, ...]:
    return (out_ch, in_ch, k, k, k)


def _resnet(prefix: str, cin: int, cout: int, *, spatial: bool) -> dict[str, tuple[int, ...]]:
    """One resnet: norm1/conv1/norm2/conv2 (+ nin_shortcut when widths differ)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for norm, ch in (("norm1", cin), ("norm2", cout)):
        if spatial:  # decoder: SpatialNorm3D(norm_layer, conv_y.conv, conv_b.conv)
            shapes[f"{prefix}.{norm}.norm_layer.weight"] = (ch,)
            shapes[f"{prefix}.{norm}.norm_layer.bias"] = (ch,)
            for conv in ("conv_y", "conv_b"):
                shapes[f"{prefix}.{norm}.{conv}.conv.weight"] = _conv3(ch, LATENT, 1)
                shapes[f"{prefix}.{norm}.{conv}.conv.bias"] = (ch,)
        else:
            shapes[f"{prefix}.{norm}.weight"] = (ch,)
            shapes[f"{prefix}.{norm}.bias"] = (ch,)
    shapes[f"{prefix}.conv1.conv.weight"] = _conv3(cout, cin, 3)
    shapes[f"{prefix}.conv1.conv.bias"] = (cout,)
    shapes[f"{prefix}.conv2.conv.weight"] = _conv3(cout, cout, 3)
    shapes[f"{prefix}.conv2.conv.bias"] = (cout,)
    if cin != cout:
        shapes[f"{prefix}.nin_shortcut.weight"] = _conv3(cout, cin, 1)
        shapes[f"{prefix}.nin_shortcut.bias"] = (cout,)
    return shapes


def official_vae_shapes(widths: tuple[int, ...] = TINY_WIDTHS, layers: int = 3) -> dict:
    """Key -> shape of an official-format VAE state_dict (spec §6.2, §6.3, §8.3)."""
    c, last = widths, len(widths) - 1
    s: dict[str, tuple[int, ...]] = {
        "encoder.conv_in.conv.weight": _conv3(c[0], 3, 3),
        "encoder.conv_in.conv.bias": (c[0],),
    }
    for i in range(len(c)):
        for j in range(layers):
            cin = (c[i - 1] if i else c[0]) if j == 0 else c[i]
            s |= _resnet(f"encoder.down.{i}.block.{j}", cin, c[i], spatial=False)
        if i < last:
            s[f"encoder.down.{i}.downsample.conv.weight"] = (c[i], c[i], 3, 3)
            s[f"encoder.down.{i}.downsample.conv.bias"] = (c[i],)
    for b in ("block_1", "block_2"):
        s |= _resnet(f"encoder.mid.{b}", c[last], c[last], spatial=False)
    s |= {"encoder.norm_out.weight": (c[last],), "encoder.norm_out.bias": (c[last],)}
    s["encoder.conv_out.conv.weight"] = _conv3(2 * LATENT, c[last], 3)
    s["encoder.conv_out.conv.bias"] = (2 * LATENT,)
    s["decoder.conv_in.conv.weight"] = _conv3(c[last], LATENT, 3)
    s["decoder.conv_in.conv.bias"] = (c[last],)
    for b in ("block_1", "block_2"):
        s |= _resnet(f"decoder.mid.{b}", c[last], c[last], spatial=True)
    for i in range(len(c)):  # up.i is level i; up.3 runs first
        for j in range(layers + 1):
            cin = (c[i + 1] if i < last else c[last]) if j == 0 else c[i]
            s |= _resnet(f"decoder.up.{i}.block.{j}", cin, c[i], spatial=True)
        if i > 0:
            s[f"decoder.up.{i}.upsample.conv.weight"] = (c[i], c[i], 3, 3)
            s[f"decoder.up.{i}.upsample.conv.bias"] = (c[i],)
    s["decoder.norm_out.norm_layer.weight"] = (c[0],)
    s["decoder.norm_out.norm_layer.bias"] = (c[0],)
    for conv in ("conv_y", "conv_b"):
        s[f"decoder.norm_out.{conv}.conv.weight"] = _conv3(c[0], LATENT, 1)
        s[f"decoder.norm_out.{conv}.conv.bias"] = (c[0],)
    s["decoder.conv_out.conv.weight"] = _conv3(3, c[0], 3)
    s["decoder.conv_out.conv.bias"] = (3,)
    return s


def random_official_vae(
    seed: int = 0, widths: tuple[int, ...] = TINY_WIDTHS, layers: int = 3
) -> dict:
    """Seeded random tensors for every official key, scaled so activations stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in sorted(official_vae_shapes(widths, layers).items()):
        if len(shape) == 1:
            base = 1.0 if "norm" in key and key.endswith(".weight") else 0.0  # GN scale ~ 1
            tensors[key] = base + 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            tensors[key] = torch.randn(shape, generator=gen) / fan_in**0.5
    return tensors


def write_official_vae(
    path: Path, seed: int = 0, widths: tuple[int, ...] = TINY_WIDTHS, layers: int = 3
) -> dict:
    """torch.save({'state_dict': ...}) with the VAE keys plus training-only `loss.*` keys;
    `layers` resnets per encoder level (one more per decoder level), 3 as the official VAE.
    """
    tensors = random_official_vae(seed, widths, layers)
    extra = {
        "loss.logvar": torch.zeros(()),
        "loss.discriminator.main.0.weight": torch.randn(8, 3, 4, 4),
    }
    torch.save({"state_dict": {**tensors, **extra}}, path)
    return tensors


def to_diffusers_state(official: dict) -> dict:
    """Official names -> diffusers AutoencoderKLCogVideoX names, per diffusers' converter rules:
    block.->resnets., down.->down_blocks., up.i->up_blocks.(levels-1-i), nin_shortcut->
    conv_shortcut, mid.block_{1,2}->mid_block.resnets.{0,1}.
    """
    levels = 1 + max(int(k.split(".")[2]) for k in official if k.startswith("decoder.up."))
    out = {}
    for key, value in official.items():
        parts = key.split(".")
        if parts[:2] == ["decoder", "up"]:
            parts[1], parts[2] = "up_blocks", str(levels - 1 - int(parts[2]))
        name = ".".join(parts)
        for old, new in (
            ("encoder.mid.block_1.", "encoder.mid_block.resnets.0."),
            ("encoder.mid.block_2.", "encoder.mid_block.resnets.1."),
            ("decoder.mid.block_1.", "decoder.mid_block.resnets.0."),
            ("decoder.mid.block_2.", "decoder.mid_block.resnets.1."),
            ("encoder.down.", "encoder.down_blocks."),
            (".block.", ".resnets."),
            (".downsample.", ".downsamplers.0."),
            (".upsample.", ".upsamplers.0."),
            (".nin_shortcut.", ".conv_shortcut."),
        ):
            name = name.replace(old, new)
        out[name] = value
    return out
