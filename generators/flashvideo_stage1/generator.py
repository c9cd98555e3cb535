"""`FlashVideoStage1`: text embedding -> 49 frames of 256x480, FlashVideo's stage I (spec §1, §4).

The DiT is vidrefine's `VideoDiT` in its stage-I configuration, loaded from the official
stage1.pt with the LoRA merged at load (spec §3.8); the VAE is the same CogVideoX VAE stage II
uses, at latent scale 0.7 (spec §6.4). Both load through `vidrefine.pipeline.loading`, placed as
the run's plan says (precision, layer streaming, compile), exactly like stage II's models.

As for stage II, the DiT's architecture is read from the file: a smaller or fine-tuned stage1.pt
loads as it is, and only a file of the other stage (stage2.pt under the name stage1.pt) is
refused. `dit_config` is the shape the memory plan assumes before any weight is read.
"""

from __future__ import annotations

import gc
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from generators.flashvideo_stage1.sampler import (
    GUIDANCE_MODES,
    STEPS,
    guidance_scales,
    sample_stage1_latents,
)
from vidrefine.config import OFFICIAL_VAE, STAGE1_DIT, STAGE1_LATENT_SCALE, DiTConfig, RunConfig
from vidrefine.errors import BadInput
from vidrefine.pipeline.loading import load_transformer, load_vae_for
from vidrefine.pipeline.vae_pass import decode_latents
from vidrefine.plan.hardware import HOST_VAE_SHARE
from vidrefine.plan.vae import plan_vae
from vidrefine.plugins import API_VERSION, GeneratedClip, Placement
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.device import device_memory, torch_dtype

NATIVE_HW = (256, 480)  # "270p" rounded down to a multiple of 16 (pitfall 1)
NATIVE_FRAMES = 49  # 13 latent frames: 1 + 4 * 12
NATIVE_FPS = Fraction(8)  # the original writes every clip at 8 fps (spec §9.2)
DEFAULT_CFG = 8.0  # spec §4.3, §9.2
CUDA_VAE_SHARE = 0.9  # without --vram, the decode plans for this share of the free GPU memory


class FlashVideoStage1:
    """FlashVideo's stage-I generator (plugin API version 2).

    The constructor arguments exist for tests and experiments (a tiny model at a tiny size);
    the entry point builds the defaults, which are the original's. `dit_config` (the official
    5.6 B `STAGE1_DIT` by default) is what the run's memory plan sizes before loading; the
    weights load in whatever stage-I architecture stage1.pt holds, so a smaller file is planned
    as the official size (the plan then overestimates) and a larger one is not planned for.
    """

    api_version = API_VERSION
    name = "flashvideo-stage1"
    required_weights = ("stage1", "vae")
    size_hw = NATIVE_HW
    num_frames = NATIVE_FRAMES
    fps = NATIVE_FPS
    dit_config: DiTConfig | None = STAGE1_DIT

    def __init__(
        self,
        *,
        size_hw: tuple[int, int] = NATIVE_HW,
        num_frames: int = NATIVE_FRAMES,
        fps: Fraction = NATIVE_FPS,
        steps: int = STEPS,
        dit_config: DiTConfig | None = STAGE1_DIT,
    ) -> None:
        """Set the clip geometry and the DiT shape the memory plan assumes.

        Loading accepts whatever stage-I architecture stage1.pt holds in either case;
        `dit_config=None` only leaves the DiT out of the run's memory plan (tests use it with
        tiny weights).
        """
        self.size_hw = size_hw
        self.num_frames = num_frames
        self.fps = fps
        self.steps = steps
        self.dit_config = dit_config
        self.cfg_scale = DEFAULT_CFG
        self.guidance = "dynamic"
        self.vae_mode = "blend"
        self.vram_gb: float | None = None
        self.placement: Placement | None = None
        self._device = torch.device("cpu")
        self._dit: torch.nn.Module | None = None
        self._vae: torch.nn.Module | None = None
        self._dtype = torch.float32
        self._vae_dtype = torch.float32
        self.model_files: dict[str, str] = {}

    # -- plugin API ------------------------------------------------------------------------
    def configure(self, config: RunConfig) -> None:
        """Take the stage-I knobs from the run config: guidance, VAE mode and memory budget.

        Precision and layer streaming are not read here: `load` gets them from the placement.
        """
        if config.stage1_guidance not in GUIDANCE_MODES:
            raise BadInput(
                f"stage1_guidance {config.stage1_guidance!r} is not one of "
                f"{', '.join(GUIDANCE_MODES)}"
            )
        self.cfg_scale = config.stage1_cfg_scale
        self.guidance = config.stage1_guidance
        self.vae_mode = config.vae_mode
        self.vram_gb = config.vram_gb

    def describe(self) -> dict[str, Any]:
        """The settings that decide the output, for the run manifest."""
        return {
            "size_hw": list(self.size_hw),
            "num_frames": self.num_frames,
            "fps": str(self.fps),
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "guidance": self.guidance,
            "vae_mode": self.vae_mode,
            "latent_scale": STAGE1_LATENT_SCALE,
            "dtype": self.placement.dtype if self.placement else None,
            "vae_dtype": self.placement.vae_dtype if self.placement else None,
            "model_files": dict(self.model_files),
        }

    def load(self, weights_dir: Path | None, *, device: torch.device, placement: Placement) -> None:
        """Load stage1.pt (LoRA merged) and 3d-vae.pt from vidrefine's weight search path.

        Placed as stage II's models are: offload "layer" keeps the 5.6 B DiT (11 GB in bf16) in
        host memory and streams its blocks to `device`; the VAE is always on `device`. The DiT's
        architecture is the file's (not `dit_config`, which only sized the plan); a stage-II
        file is refused.
        """
        from vidrefine.checkpoints.weights import STAGE1, VAE, resolve

        paths = resolve((STAGE1, VAE), weights_dir=weights_dir, fetch=False)
        self.placement = placement
        self._device = device
        self._dtype = torch_dtype(placement.dtype)
        self._vae_dtype = torch_dtype(placement.vae_dtype)
        self._dit = load_transformer(
            paths[STAGE1.name], None, stage=1, placement=placement, device=device
        )
        self._vae = load_vae_for(paths[VAE.name], placement, device)
        self.model_files = {"stage1": str(paths[STAGE1.name]), "vae": str(paths[VAE.name])}

    def generate(
        self, prompt_embedding: torch.Tensor, seed: int, *, progress: Progress | None = None
    ) -> GeneratedClip:
        """One clip from a (1, 226, D) caption embedding; the seed fixes every noise draw."""
        if self._dit is None or self._vae is None:
            raise RuntimeError("FlashVideoStage1.generate() called before load()")
        progress = progress or NullProgress()
        latents = sample_stage1_latents(
            self._dit,
            prompt_embedding,
            self.latent_shape(),
            seed,
            scales=guidance_scales(self.guidance, self.cfg_scale, self.steps),
            dtype=self._dtype,
            steps=self.steps,
            progress=progress,
        )
        frames = self.decode(latents)
        preview = np.rint(frames).astype(np.uint8)
        return GeneratedClip(frames=frames, preview=preview, fps=self.fps)

    def release(self) -> None:
        """Drop the DiT and VAE and return their device memory."""
        loaded = self._dit is not None or self._vae is not None
        self._dit = self._vae = None
        gc.collect()
        if loaded and self._device.type == "cuda":
            torch.cuda.empty_cache()

    # -- helpers ---------------------------------------------------------------------------
    def _vae_factors(self) -> tuple[int, int, int]:
        cfg = getattr(self._vae, "config", OFFICIAL_VAE)
        return cfg.latent_channels, cfg.spatial_factor, cfg.temporal_factor

    def latent_shape(self) -> tuple[int, int, int, int]:
        """(T', C, h, w) of the DiT state, e.g. (13, 16, 32, 60) for 49 frames of 256x480.

        Known before `load` (from the official VAE's factors), as the memory plan needs it.
        """
        channels, spatial, temporal = self._vae_factors()
        (h, w), frames = self.size_hw, self.num_frames
        dit = getattr(self._dit, "config", None) or self.dit_config  # the file's, once loaded
        multiple = spatial * (dit.patch_size if dit else 2)
        if h % multiple or w % multiple:
            raise BadInput(f"generator size {w}x{h} must be a multiple of {multiple}")
        if (frames - 1) % temporal:
            raise BadInput(f"generator frame count {frames} must be 1 + {temporal}k")
        return 1 + (frames - 1) // temporal, channels, h // spatial, w // spatial

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (1, T', C, h, w) x 0.7 -> float frames (T, H, W, 3) in [0, 255], unrounded.

        clamp((x + 1) / 2) * 255 without quantisation, as the original hands stage II
        (spec §6.5, pitfall 18).
        """
        z = rearrange(latents, "b t c h w -> b c t h w") / STAGE1_LATENT_SCALE
        plan = plan_vae(
            self.size_hw,
            self.num_frames,
            budget_gb=self._vae_budget_gb(),
            mode=self.vae_mode,
            dtype_bytes=torch.finfo(self._vae_dtype).bits // 8,
            faithful_splits_hw=(1, 1),  # stage I decodes the whole 32x60 latent (spec §6.5)
        )
        video = decode_latents(self._vae, z.to(self._vae_dtype), plan)  # (1, 3, T, H, W)
        video = ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0
        return rearrange(video[0], "c t h w -> t h w c").cpu().numpy().astype(np.float32)

    def _vae_budget_gb(self) -> float:
        """Memory for the decode: --vram when given, else most of what the device has free now
        (the DiT included), or the host's VAE share on the CPU.
        """
        if self.vram_gb is not None:
            return self.vram_gb
        if self._device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self._device)
            return CUDA_VAE_SHARE * free / 1024**3
        return HOST_VAE_SHARE * device_memory(self._device)[2]
