"""Loading stage II, in the order that keeps the big models apart: every caption through T5
first (T5 is freed afterwards; spec §7: T5-XXL is ~9.5 GB in bf16), then the DiT and the VAE,
each placed as the plan says (precision, layer streaming, compile). `upscale`, `t2v` and the
bundled stage-I generator all load through here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidrefine.checkpoints import load_dit, load_vae
from vidrefine.checkpoints.dit import read_dit_weights
from vidrefine.checkpoints.vae import read_vae_weights
from vidrefine.config import DiTConfig, RunConfig
from vidrefine.errors import BadCheckpoint, MissingWeights
from vidrefine.models.text import TEXT_LENGTH, T5TextEncoder
from vidrefine.plan.clip import ModelPlacement
from vidrefine.plan.model_sizes import ModelSizes, t5_sizes
from vidrefine.progress import Progress
from vidrefine.runtime.device import torch_dtype
from vidrefine.runtime.placement import load_device, place_blocks

# names of the weight files a stage-II run needs (keys of the `paths` mapping)
VAE_FILE, STAGE2_FILE, T5_FOLDER = "3d-vae.pt", "stage2.pt", "t5-v1_1-xxl"


@dataclass
class StageTwoModels:
    """The loaded stage-II models and where they run."""

    vae: nn.Module
    dit: nn.Module
    device: torch.device
    dtype: torch.dtype  # DiT weights and ODE state
    vae_dtype: torch.dtype
    vae_share: Any = None  # a `vae_pass.TileShare` when ranks share the VAE passes of a window


def encode_captions(
    t5_folder: Path,
    captions: Sequence[str],
    placement: ModelPlacement,
    device: torch.device,
    progress: Progress,
) -> dict[str, torch.Tensor]:
    """T5 states (1, 226, d) on the CPU for each distinct caption; T5 is freed afterwards.

    Streamed (offload "layer"), T5 loads on the host and its blocks visit `device` in turn, so
    the encoder needs about 1 GB of GPU memory instead of 9.
    """
    distinct = list(dict.fromkeys(captions))
    encoder = T5TextEncoder.from_folder(
        t5_folder,
        dtype=torch_dtype(placement.dtype),
        device=load_device(placement.offload, device),
    )
    streamer = place_blocks(encoder.model, encoder.blocks, device, offload=placement.offload)
    encoder.set_device(device)
    try:
        with progress.task("captions", total=len(distinct), unit="caption") as bar:
            states = {}
            for caption in distinct:
                states[caption] = _encode_one(encoder, caption, progress)
                bar.advance()
    finally:
        if streamer is not None:
            streamer.remove()
        encoder.release()
    return states


def _encode_one(encoder: T5TextEncoder, caption: str, progress: Progress) -> torch.Tensor:
    encoded = encoder.encode([caption])
    if encoded.truncated[0]:
        progress.warn(
            f"caption has {encoded.token_counts[0]} tokens and was cut to {TEXT_LENGTH} (the T5 "
            f"limit the models were trained with): {caption[:60]!r}..."
        )
    return encoded.embeddings[0:1].cpu()


def lora_specs(config: RunConfig) -> tuple[tuple[Path, float], ...]:
    """The adapters `config.lora` names as (file, scale), each file checked to be there: a
    run checks this before any work (the adapters themselves are checked as they merge).
    """
    from vidrefine.train.lora import parse_lora_spec

    specs = tuple(parse_lora_spec(spec) for spec in config.lora)
    missing = [str(path) for path, _ in specs if not path.is_file()]
    if missing:
        raise MissingWeights(f"no LoRA adapter file {', '.join(missing)}")
    return specs


def with_adapters(paths: Mapping[str, Path], lora: Sequence[tuple[Path, float]]) -> dict[str, Path]:
    """`paths` and the adapter files of `lora`: the files whose fingerprints key a resume."""
    return {**paths, **{f"lora {i}": path for i, (path, _) in enumerate(lora)}}


def load_transformer(
    path: Path,
    config: DiTConfig | None,
    *,
    stage: int,
    placement: ModelPlacement,
    device: torch.device,
    lora: Sequence[tuple[Path, float]] = (),
) -> nn.Module:
    """A DiT checkpoint (stage 1 or 2) in the placement's precision with the `lora` adapters
    merged, then streamed and compiled as the placement says; `config=None` accepts the
    architecture the file holds.
    """
    dit = load_dit(
        path,
        config,
        dtype=torch_dtype(placement.dtype),
        device=load_device(placement.offload, device),
        stage=stage,
    ).eval()
    if lora:
        from vidrefine.train.lora import apply_loras

        apply_loras(dit, lora)
    place_blocks(dit, dit.blocks, device, offload=placement.offload, compile=placement.compile)
    return dit


def load_vae_for(path: Path, placement: ModelPlacement, device: torch.device) -> nn.Module:
    """The VAE on `device` in the placement's VAE precision (it never streams)."""
    return load_vae(path, dtype=torch_dtype(placement.vae_dtype), device=device).eval()


def load_stage_two(
    paths: Mapping[str, Path],
    placement: ModelPlacement,
    device: torch.device,
    lora: Sequence[tuple[Path, float]] = (),
) -> StageTwoModels:
    """The VAE and the stage-II DiT (with the `lora` adapters merged) as `placement` says."""
    vae = load_vae_for(paths[VAE_FILE], placement, device)
    dit = load_transformer(
        paths[STAGE2_FILE], None, stage=2, placement=placement, device=device, lora=lora
    )
    return StageTwoModels(
        vae=vae,
        dit=dit,
        device=device,
        dtype=torch_dtype(placement.dtype),
        vae_dtype=torch_dtype(placement.vae_dtype),
    )


def found_model_sizes(paths: Mapping[str, Path]) -> ModelSizes:
    """The sizes of the weight files a stage-II run loads, for its memory plan: the DiT's and
    the VAE's architecture read from their files (memory-mapped: the tensors stay on disk) and
    T5's from its config.json. Raises what loading them would (MissingWeights, BadCheckpoint).
    """
    dit = read_dit_weights(paths[STAGE2_FILE]).config
    vae_tensors, vae = read_vae_weights(paths[VAE_FILE])
    return ModelSizes(
        dit=dit,
        vae_params=sum(t.numel() for t in vae_tensors.values()),
        vae_widths=vae.block_out_channels,
        **t5_sizes(_t5_config(paths[T5_FOLDER])),
    )


def sizes_if_found(weights_dir: Path | None = None) -> ModelSizes | None:
    """`found_model_sizes` of the stage-II weights on the search path (`--weights` first), or
    None when one is missing or unreadable: a plan then assumes the official models.
    """
    from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, locate, search_path

    found = locate(UPSCALE_WEIGHTS, search_path(weights_dir))
    if any(path is None for path in found.values()):
        return None
    try:
        return found_model_sizes(found)  # type: ignore[arg-type]
    except (MissingWeights, BadCheckpoint):
        return None


def _t5_config(folder: Path) -> dict:
    """The transformers config.json of a T5 folder."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        t5_sizes(config)  # every key the sizes need is there
    except FileNotFoundError:
        raise MissingWeights(f"{path} not found: the T5 folder is incomplete") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadCheckpoint(f"{path} is not a T5 config ({exc})") from None
    return config
