"""The official weight files as diffusers components, and `vidrefine export diffusers OUT`.

`load_components` maps 3d-vae.pt into diffusers' `AutoencoderKLCogVideoX` (through the rename
table `vidrefine.checkpoints.vae` reads diffusers folders with), stage2.pt into
`FlashVideoTransformer3DModel` and the T5 folder into transformers' classes. `export_diffusers`
writes them as a diffusers folder, safetensors only, with the code (`remote_code`) beside them,
built under a temporary name and renamed when complete (`folder.exported_folder`).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from vidrefine.checkpoints.common import key_list, load_strict
from vidrefine.checkpoints.dit import read_dit_weights, wrong_stage
from vidrefine.checkpoints.vae import from_diffusers_name, read_vae_weights
from vidrefine.checkpoints.weights import STAGE2, T5, UPSCALE_WEIGHTS, VAE, resolve
from vidrefine.config import STAGE2_LATENT_SCALE
from vidrefine.diffusers.folder import check_export_folder, exported_folder
from vidrefine.errors import BadCheckpoint, BadInput

EXTRA_HINT = "pip install 'vidrefine[diffusers]'"
PIPELINE_CLASS = "FlashVideoRefinePipeline"
CODE = {  # component folder ("" = the top) -> (module whose code it carries, class)
    "": ("vidrefine.diffusers.pipeline", PIPELINE_CLASS),
    "transformer": ("vidrefine.diffusers.transformer", "FlashVideoTransformer3DModel"),
    "scheduler": ("vidrefine.diffusers.scheduler", "FlashVideoFlowScheduler"),
}
VAE_CLASS = "AutoencoderKLCogVideoX"


def load_transformer(path: Path) -> Any:
    """stage2.pt (or a converted stage-II file) as a `FlashVideoTransformer3DModel`."""
    from vidrefine.diffusers.transformer import (
        FlashVideoTransformer3DModel,
        diffusers_config,
        diffusers_key,
    )

    weights = read_dit_weights(path)
    if not weights.config.stage2_embeddings:
        raise wrong_stage(weights.path, weights.config, 2)
    tensors = {diffusers_key(k): v for k, v in weights.tensors.items()}
    config = diffusers_config(weights.config)
    what = f"{weights.path.name} (stage II DiT)"
    return load_strict(lambda: FlashVideoTransformer3DModel(**config), tensors, what=what).eval()


def load_vae(path: Path) -> Any:
    """3d-vae.pt (or any VAE file vidrefine reads) as diffusers' CogVideoX VAE, stage-II scale."""
    from diffusers import AutoencoderKLCogVideoX

    tensors, cfg = read_vae_weights(path)

    def build() -> Any:
        return AutoencoderKLCogVideoX(
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            latent_channels=cfg.latent_channels,
            norm_num_groups=cfg.norm_groups,
            norm_eps=cfg.norm_eps,
            temporal_compression_ratio=cfg.temporal_factor,
            scaling_factor=STAGE2_LATENT_SCALE,  # spec §6.4
            use_quant_conv=False,
            use_post_quant_conv=False,
        )

    with torch.device("meta"):
        names = list(build().state_dict())
    levels = len(cfg.block_out_channels)
    official = {name: from_diffusers_name(name, levels) for name in names}
    missing = sorted(o for o in official.values() if o not in tensors)
    unused = sorted(set(tensors) - set(official.values()))
    if missing or unused:
        raise BadCheckpoint(
            f"{path}: does not fit diffusers' CogVideoX VAE "
            f"({len(missing)} missing: {key_list(missing)}; {len(unused)} unused: "
            f"{key_list(unused)})"
        )
    mapped = {name: tensors[o] for name, o in official.items()}
    return load_strict(build, mapped, what=f"VAE {path}").eval()


def load_text_encoder(folder: Path) -> tuple[Any, Any]:
    """The T5 folder's tokenizer and encoder (transformers' own classes), read offline."""
    from vidrefine.models.text import T5TextEncoder

    encoder = T5TextEncoder.from_folder(folder, dtype="auto")  # its checks and one-line errors
    return encoder.tokenizer, encoder.model


def load_components(paths: Mapping[str, Path]) -> dict[str, Any]:
    """The pipeline's five components from the files `resolve` found (names as keys)."""
    from vidrefine.diffusers.scheduler import FlashVideoFlowScheduler

    tokenizer, text_encoder = load_text_encoder(paths[T5.name])
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": load_vae(paths[VAE.name]),
        "transformer": load_transformer(paths[STAGE2.name]),
        "scheduler": FlashVideoFlowScheduler(),
    }


def pipeline_from_weights(
    weights: str | Path | None = None, *, offline: bool = False, torch_dtype: Any = None
) -> Any:
    """A `FlashVideoRefinePipeline` straight from the official files (no export needed).

    `weights` is searched first, then `$VIDREFINE_WEIGHTS` and the user cache, and missing
    files are fetched unless `offline`, as `Refiner.from_pretrained` does.
    """
    from vidrefine.diffusers.pipeline import FlashVideoRefinePipeline

    paths = resolve(UPSCALE_WEIGHTS, weights_dir=weights, offline=offline)
    pipe = FlashVideoRefinePipeline(**load_components(paths))
    return pipe if torch_dtype is None else pipe.to(dtype=torch_dtype)


def _copy_text_encoder(folder: Path, model: Any, out: Path) -> None:
    """The T5 weights as they are when they are safetensors (no 9 GB reload), else re-saved."""
    shards = sorted(folder.glob("*.safetensors"))
    if not shards or not (folder / "config.json").is_file():
        model.save_pretrained(out, safe_serialization=True)
        return
    out.mkdir()
    for path in [folder / "config.json", *shards, *folder.glob("*.safetensors.index.json")]:
        shutil.copyfile(path, out / path.name)


def model_index(stems: Mapping[str, str], tokenizer: Any) -> dict[str, Any]:
    """model_index.json: the pipeline and components, ours as remote code beside them."""
    import diffusers

    def ours(component: str) -> list[str]:
        return [stems[component], CODE[component][1]]

    return {
        "_class_name": ours(""),
        "_diffusers_version": diffusers.__version__,
        "scheduler": ours("scheduler"),
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", type(tokenizer).__name__],
        "transformer": ours("transformer"),
        "vae": ["diffusers", VAE_CLASS],
    }


def write_folder(paths: Mapping[str, Path], out: Path, say: Callable[[str], None]) -> None:
    """Write the diffusers folder of the files in `paths` into the empty folder `out`."""
    from vidrefine.diffusers.remote_code import write_remote_code

    components = load_components(paths)
    say("writing transformer/, vae/, text_encoder/, tokenizer/, scheduler/")
    for name in ("transformer", "vae", "scheduler", "tokenizer"):
        components[name].save_pretrained(out / name)
    spiece = paths[T5.name] / "spiece.model"  # for transformers releases without tokenizer.json
    if spiece.is_file() and not (out / "tokenizer" / spiece.name).exists():
        shutil.copyfile(spiece, out / "tokenizer" / spiece.name)
    _copy_text_encoder(paths[T5.name], components["text_encoder"], out / "text_encoder")
    stems = {part: write_remote_code(out / part, module) for part, (module, _) in CODE.items()}
    _add_auto_map(out / "transformer" / "config.json", stems["transformer"])
    index = model_index(stems, components["tokenizer"])
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    pickled = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in _PICKLES)
    if pickled:
        raise RuntimeError(f"export wrote pickled weights {pickled} (a bug: safetensors only)")


_PICKLES = {".bin", ".pt", ".pth", ".ckpt", ".pkl"}


def _add_auto_map(config_path: Path, stem: str) -> None:
    """Let `AutoModel.from_pretrained("OUT/transformer", trust_remote_code=True)` find the class
    in the code beside it (with OUT and subfolder=, diffusers reads model_index.json instead).
    """
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModel": f"{stem}.{CODE['transformer'][1]}"}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_diffusers(
    out: str | Path,
    *,
    weights: str | Path | None = None,
    overwrite: bool = False,
    offline: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write the official stage-II files vidrefine finds as the diffusers folder `out`.

    The folder is checked before any weight is read or fetched; missing weights are fetched as
    `upscale` fetches them, unless `offline` (then MissingWeights names the command that
    fetches them). Returns the folder, absolute.
    """
    if importlib.util.find_spec("diffusers") is None:
        raise BadInput(f"exporting a diffusers folder needs diffusers: {EXTRA_HINT}")
    final = check_export_folder(out, overwrite=overwrite)
    paths = resolve(UPSCALE_WEIGHTS, weights_dir=weights, offline=offline, announce=say)
    say(f"reading {', '.join(str(p) for p in paths.values())}")
    with exported_folder(final, overwrite=overwrite) as temp:
        write_folder(paths, temp, say)
    return final


__all__ = [
    "export_diffusers",
    "load_components",
    "load_transformer",
    "load_vae",
    "model_index",
    "pipeline_from_weights",
]
