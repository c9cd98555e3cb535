"""DiT weight files -> `VideoDiT`: official stage1.pt / stage2.pt and vidrefine safetensors.

Official files hold the whole SAT engine under 'module' (flashvideo-spec §8.1); the DiT lives
under `model.diffusion_model.`. VAE and T5 copies (`first_stage_model.*`, `conditioner.*`) are
ignored and reported. Stage-I LoRA is merged at load (spec §3.8). The configuration is inferred
from tensor shapes and checked against the one the caller expects.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vidrefine.checkpoints.common import key_list, load_strict, read_checkpoint, save_safetensors
from vidrefine.checkpoints.dit_keys import is_dropped, merge_lora, to_official, to_ours
from vidrefine.config import DiTConfig, from_dict
from vidrefine.errors import BadCheckpoint, BadInput, OutputExists
from vidrefine.models.dit import VideoDiT

OFFICIAL_PREFIX = "model.diffusion_model."
FORMAT_TAG = "dit"  # safetensors metadata "vidrefine_format"
_LAYER = re.compile(r"^transformer\.layers\.(\d+)\.")
# Fields a file's shapes determine; text_length is the T5 padding length, not a weight shape.
_INFERRED_FIELDS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "time_embed_dim",
    "text_dim",
    "patch_size",
    "in_channels",
    "out_channels",
    "mlp_ratio",
    "stage2_embeddings",
)


@dataclass
class DiTWeights:
    """DiT tensors under `VideoDiT` names, the config they fit, and what loading did."""

    tensors: dict[str, torch.Tensor]
    config: DiTConfig
    path: Path
    source: str  # "official" | "vidrefine"
    lora_merged: list[str] = field(default_factory=list)  # official module names
    dropped: list[str] = field(default_factory=list)  # unused official keys (RoPE tables, ...)
    ignored: dict[str, int] = field(default_factory=dict)  # other engine parts: prefix -> count

    def summary(self) -> str:
        """One line for logs and `vidrefine info`."""
        parts = [f"{self.path.name}: {stage_name(self.config)} DiT, {describe(self.config)}"]
        if self.lora_merged:
            parts.append(f"merged {len(self.lora_merged)} LoRA linears")
        if self.ignored:
            parts.append(
                "ignored " + ", ".join(f"{n} {p}.* keys" for p, n in sorted(self.ignored.items()))
            )
        return "; ".join(parts)


def stage_name(cfg: DiTConfig) -> str:
    """'stage II' for configs with the refiner's extra embeddings, else 'stage I'."""
    return "stage II" if cfg.stage2_embeddings else "stage I"


def describe(cfg: DiTConfig, names: tuple[str, ...] = _INFERRED_FIELDS) -> str:
    """Short human description of the `names` fields of `cfg`."""
    words = {
        "hidden_size": f"hidden {cfg.hidden_size}",
        "num_layers": f"{cfg.num_layers} layers",
        "num_heads": f"{cfg.num_heads} heads",
        "time_embed_dim": f"time embedding {cfg.time_embed_dim}",
        "text_dim": f"text width {cfg.text_dim}",
        "patch_size": f"patch {cfg.patch_size}",
        "in_channels": f"{cfg.in_channels} input channels",
        "out_channels": f"{cfg.out_channels} output channels",
        "mlp_ratio": f"MLP ratio {cfg.mlp_ratio}",
        "stage2_embeddings": "the time_size_embedding"
        if cfg.stage2_embeddings
        else "no time_size_embedding",
    }
    items = [words[n] for n in names]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _shape(tensors: Mapping[str, torch.Tensor], key: str, where: str, ndim: int) -> tuple[int, ...]:
    if key not in tensors:
        raise BadCheckpoint(f"{where}: missing {key}, so this is not a FlashVideo DiT")
    shape = tuple(tensors[key].shape)
    if len(shape) != ndim:
        raise BadCheckpoint(f"{where}: {key} has shape {shape}; a FlashVideo DiT has {ndim} dims")
    return shape


def infer_dit_config(official: Mapping[str, torch.Tensor], where: str = "DiT") -> DiTConfig:
    """Infer the architecture from official-name tensors (prefix removed, LoRA merged)."""
    hidden, in_channels, patch, _ = _shape(official, "mixins.patch_embed.proj.weight", where, 4)
    _, text_dim = _shape(official, "mixins.patch_embed.text_proj.weight", where, 2)
    time_embed_dim, _ = _shape(official, "time_embed.0.weight", where, 2)
    (head_dim,) = _shape(official, "mixins.adaln_layer.query_layernorm_list.0.weight", where, 1)
    inner, _ = _shape(official, "transformer.layers.0.mlp.dense_h_to_4h.weight", where, 2)
    out_dim, _ = _shape(official, "mixins.final_layer.linear.weight", where, 2)
    layers = {int(m.group(1)) for k in official if (m := _LAYER.match(k))}
    return DiTConfig(
        hidden_size=hidden,
        num_layers=max(layers) + 1,
        num_heads=hidden // head_dim,
        time_embed_dim=time_embed_dim,
        text_dim=text_dim,
        patch_size=patch,
        in_channels=in_channels,
        out_channels=out_dim // (patch * patch),
        mlp_ratio=inner // hidden,
        stage2_embeddings="time_size_embedding.0.weight" in official,
    )


def check_config(found: DiTConfig, expected: DiTConfig | None, path: Path) -> DiTConfig:
    """Return the config to build (expected's text_length kept); refuse a mismatched file."""
    if expected is None:
        return found
    differ = tuple(n for n in _INFERRED_FIELDS if getattr(found, n) != getattr(expected, n))
    if not differ:
        return expected
    stage = stage_name(expected)
    if stage_name(found) == stage:  # the right stage, another size (e.g. a small fine-tune)
        raise BadCheckpoint(
            f"{path.name} holds a {stage} DiT of another size than the one expected here: the "
            f"file has {describe(found, differ)}, the expected one {describe(expected, differ)} "
            "(pass config=None to accept the architecture the file holds)"
        )
    raise BadCheckpoint(
        f"{path.name} passed where {stage} is expected: the file has {describe(found, differ)}"
        f" (a {stage_name(found)} DiT), {stage} has {describe(expected, differ)}"
    )


def wrong_stage(path: Path, found: DiTConfig, stage: int) -> BadCheckpoint:
    """The error for a DiT file of the other stage, e.g. stage2.pt copied over stage1.pt."""
    holds, wanted = stage_name(found), "stage II" if stage == 2 else "stage I"
    right, other = ("stage2.pt", "stage1.pt") if stage == 2 else ("stage1.pt", "stage2.pt")
    named = f"is named {right} but " if path.name == right else ""
    copy = f" (a copy of {other}?)" if path.name == right else ""
    return BadCheckpoint(
        f"{path} {named}holds FlashVideo's {holds} DiT{copy}, and a {wanted} DiT is needed "
        f"here; put the {wanted} checkpoint ({right}) there: `vidrefine download --only "
        f"{right.removesuffix('.pt')}` fetches it"
    )


def _not_a_dit(raw_keys: list[str], path: Path) -> BadCheckpoint:
    if any(k.startswith(("encoder.", "decoder.")) for k in raw_keys):
        return BadCheckpoint(
            f"{path} looks like a VAE checkpoint (encoder.*/decoder.* keys), not a DiT; "
            "pass stage1.pt or stage2.pt as the DiT and 3d-vae.pt as the VAE"
        )
    shown = ", ".join(sorted(raw_keys)[:4]) or "no keys"
    return BadCheckpoint(
        f"{path} holds no DiT weights (no '{OFFICIAL_PREFIX}*' keys; found {shown}); "
        "pass stage1.pt, stage2.pt or a file written by convert_dit"
    )


def _split_engine(
    tensors: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Return the DiT's tensors (prefix removed) and counts of the other engine parts' keys."""
    dit = {
        k[len(OFFICIAL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OFFICIAL_PREFIX)
    }
    if not dit and "mixins.patch_embed.proj.weight" in tensors:
        return dict(tensors), {}  # a bare DiT dictionary, already without the engine prefix
    if not dit:
        raise _not_a_dit(list(tensors), path)
    ignored: dict[str, int] = {}
    for key in tensors:
        if not key.startswith(OFFICIAL_PREFIX):
            top = key.split(".", 1)[0]
            ignored[top] = ignored.get(top, 0) + 1
    return dit, ignored


def _check_keys(ours: Mapping[str, torch.Tensor], cfg: DiTConfig, where: str) -> None:
    """Compare with a meta-built model; name problems by their official key names."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VideoDiT(cfg).state_dict().items()}
    missing = sorted(to_official(k) for k in set(expected) - set(ours))
    wrong = sorted(
        f"{to_official(k)} {tuple(ours[k].shape)} (expected {expected[k]})"
        for k in set(expected) & set(ours)
        if tuple(ours[k].shape) != expected[k]
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {key_list(missing)}")
    if wrong:
        problems.append(f"{len(wrong)} with wrong shape: {key_list(wrong)}")
    if problems:
        raise BadCheckpoint(f"{where}: " + "; ".join(problems))


def _from_official(
    tensors: Mapping[str, torch.Tensor], path: Path, expected: DiTConfig | None
) -> DiTWeights:
    where = f"{path.name} (official DiT)"
    dit, ignored = _split_engine(tensors, path)
    dit, merged = merge_lora(dit, where)
    dropped = sorted(k for k in dit if is_dropped(k))
    renamed = {k: to_ours(k) for k in dit if not is_dropped(k)}
    unknown = sorted(k for k, ours in renamed.items() if ours is None)
    if unknown:
        raise BadCheckpoint(f"{where}: {len(unknown)} unexpected: {key_list(unknown)}")
    cfg = check_config(infer_dit_config(dit, where), expected, path)
    ours = {renamed[k]: dit[k] for k in renamed}
    _check_keys(ours, cfg, where)
    return DiTWeights(ours, cfg, path, "official", merged, dropped, ignored)


def _from_vidrefine(
    tensors: dict[str, torch.Tensor],
    metadata: Mapping[str, str],
    path: Path,
    expected: DiTConfig | None,
) -> DiTWeights:
    try:
        cfg = from_dict(DiTConfig, json.loads(metadata["config"]), source=str(path))
    except (KeyError, json.JSONDecodeError, BadInput, TypeError) as exc:
        raise BadCheckpoint(f"{path}: unreadable DiT config in the metadata ({exc})") from exc
    cfg = check_config(cfg, expected, path)
    return DiTWeights(tensors, cfg, path, "vidrefine")


def read_dit_weights(path: str | Path, config: DiTConfig | None = None) -> DiTWeights:
    """Read a DiT file into `VideoDiT`-named tensors, checked against `config` if given.

    Raises:
        MissingWeights: `path` does not exist.
        BadCheckpoint: truncated/unreadable file, not a DiT (e.g. the VAE), other stage than
            `config`, missing/unexpected/wrong-shape keys (named by their official names).
    """
    raw = read_checkpoint(path)
    if raw.format == "diffusers":
        raise BadCheckpoint(
            f"{raw.path} is a diffusers folder; the DiT loads from stage1.pt / stage2.pt or a "
            "file written by convert_dit"
        )
    tag = raw.metadata.get("vidrefine_format")
    if tag == FORMAT_TAG:
        return _from_vidrefine(raw.tensors, raw.metadata, raw.path, config)
    if tag is not None:
        raise BadCheckpoint(f"{raw.path} is a vidrefine '{tag}' file, not a DiT")
    return _from_official(raw.tensors, raw.path, config)


def load_dit(
    path: str | Path,
    config: DiTConfig | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    stage: int | None = None,
) -> VideoDiT:
    """Build a `VideoDiT` from `path` (official .pt or vidrefine .safetensors).

    Args:
        path: stage1.pt / stage2.pt ('module' dict) or a `convert_dit` output.
        config: expected architecture (e.g. `STAGE2_DIT`); a file of another shape is refused.
            None accepts whatever the file holds (config inferred from its shapes).
        dtype: cast floating weights to this dtype; None keeps the file's (bf16 officially).
        device: where the module ends up.
        stage: 1 or 2 to refuse the other stage's file whatever its size (tiny test models
            included); `config` checks the exact architecture instead.
    """
    weights = read_dit_weights(path, config)
    if stage is not None and weights.config.stage2_embeddings != (stage == 2):
        raise wrong_stage(weights.path, weights.config, stage)
    tensors = weights.tensors
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    what = f"{weights.path.name} ({stage_name(weights.config)} DiT)"
    model = load_strict(lambda: VideoDiT(weights.config), tensors, what=what)
    return model.to(device)  # type: ignore[return-value]


def convert_dit(
    src: str | Path,
    dst: str | Path,
    config: DiTConfig | None = None,
    *,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> DiTWeights:
    """Write `src` (official, LoRA merged) as a vidrefine DiT safetensors file at `dst`."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise BadInput(f"{dst}: the converted DiT must be a .safetensors file")
    if dst.exists() and not overwrite:
        raise OutputExists(f"{dst} exists; pass overwrite=True to replace it")
    weights = read_dit_weights(src, config)
    tensors = weights.tensors
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    config_json = json.dumps(dataclasses.asdict(weights.config), sort_keys=True)
    save_safetensors(tensors, dst, {"vidrefine_format": FORMAT_TAG, "config": config_json})
    return weights
