"""`FlashVideoRefinePipeline`: stage II on one window of frames, as a diffusers pipeline.

The per-window steps are `vidrefine.pipeline.steps`' own (pixels to the degraded start latent
with the seed streams `Refiner` uses, the guided velocity, latents back to frames) over
diffusers' `AutoencoderKLCogVideoX`, transformers' T5 and `FlashVideoTransformer3DModel`, so a
generator seeded with S gives the frames `Refiner.from_pretrained(..., seed=S)` gives. One window
only: longer clips and shots are `Refiner`'s (docs/diffusers.md says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.loaders import CogVideoXLoraLoaderMixin
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput

from vidrefine.config import RunConfig, check_knobs
from vidrefine.diffusers.frames import BadPipelineInput, as_frames
from vidrefine.errors import BadInput
from vidrefine.models.text import T5TextEncoder
from vidrefine.pipeline.steps import (
    decode_to_frames,
    degraded_start,
    frames_to_model_input,
    guided_velocity,
)
from vidrefine.plan.chunking import TIME_FACTOR
from vidrefine.plan.geometry import plan_geometry
from vidrefine.plan.vae import plan_vae
from vidrefine.sampling.samplers import sample_euler

WINDOW_FRAMES = 49  # 13 latent frames: the window the DiT was trained on (spec §1)
MAX_WINDOW_FRAMES = 1 + TIME_FACTOR * 63  # the longest window `Refiner` plans (64 latents)
OUTPUT_TYPES = ("np", "pil", "pt", "latent")
# RunConfig knob -> this pipeline's argument, for error messages
ARGUMENTS = {
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "strength": "strength_step",
    "shift": "shift",
    "seed": "generator",
    "posterior": "posterior",
    "vae_mode": "vae_mode",
}


@dataclass
class FlashVideoPipelineOutput(BaseOutput):
    """`frames[0]` is the refined clip: (T, H, W, 3) floats in [0, 1] for output_type "np"."""

    frames: Any


@dataclass
class _Models:
    """What `vidrefine.pipeline.steps` reads of `StageTwoModels`, over the pipeline's modules."""

    vae: Any
    dit: Callable[..., torch.Tensor]
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    vae_share: Any = None  # one process: every VAE tile here


class _CausalVAE:
    """diffusers' CogVideoX VAE driven one temporal chunk at a time, causal cache in and out,
    as `vidrefine.pipeline.vae_pass` drives vidrefine's (its `_encode`/`_decode` loop bodies).
    """

    def __init__(self, vae: Any) -> None:
        self.vae, self.config = vae, vae.config

    def _wake(self) -> None:
        hook = getattr(self.vae, "_hf_hook", None)  # enable_model_cpu_offload's
        if hook is not None:
            hook.pre_forward(self.vae)

    def encode(self, x: torch.Tensor, cache: Any = None, kernels: Any = None) -> tuple[Any, Any]:
        """Pixels (B, 3, T, H, W) -> posterior moments (B, 32, T', h, w) and the next cache."""
        self._wake()
        if self.vae.use_tiling:  # diffusers' tiles: one call, its own chunks inside
            return self.vae.encode(x).latent_dist.parameters, None
        moments, cache = self.vae.encoder(x, conv_cache=cache)
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        return moments, cache

    def decode(self, z: torch.Tensor, cache: Any = None, kernels: Any = None) -> tuple[Any, Any]:
        """Unscaled latents (B, 16, T', h, w) -> pixels (B, 3, T, H, W) and the next cache."""
        self._wake()
        if self.vae.use_tiling:
            return self.vae.decode(z).sample, None
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        return self.vae.decoder(z, conv_cache=cache)


def seed_of(generator: torch.Generator | None) -> int:
    """The seed `Refiner` would be given: the generator's `initial_seed()` (0 without one).

    The streams are derived from the seed as `Refiner` derives them, so draws already taken
    from `generator` change nothing.
    """
    if generator is None:
        return 0
    if isinstance(generator, (list, tuple)):
        raise BadPipelineInput("generator: one torch.Generator (the pipeline refines one video)")
    return int(generator.initial_seed())


def window_of(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """`frames` padded with their last frame to `num_frames`, as `Refiner` pads a short clip."""
    if (num_frames - 1) % TIME_FACTOR or not 5 <= num_frames <= MAX_WINDOW_FRAMES:
        raise BadPipelineInput(
            f"num_frames={num_frames}: a window is 1 + 4k frames, 5 to {MAX_WINDOW_FRAMES} "
            f"(the model was trained on {WINDOW_FRAMES})"
        )
    if len(frames) > num_frames:
        raise BadPipelineInput(
            f"video has {len(frames)} frames; FlashVideoRefinePipeline refines one window of at "
            f"most num_frames={num_frames}: refine longer clips with vidrefine's Refiner "
            "(overlapping windows fused over time, shots kept apart; docs/diffusers.md)"
        )
    pad = np.repeat(frames[-1:], num_frames - len(frames), axis=0)
    return np.concatenate([frames, pad])


def _size(height: int | None, width: int | None) -> str:
    if height is None and width is None:
        return "1080p"  # `Refiner`'s default: the short side becomes 1080, aspect kept
    if height is None or width is None:
        raise BadPipelineInput("give both height and width (or neither: 1080p, aspect kept)")
    return f"{width}x{height}"


def run_config(**knobs: Any) -> RunConfig:
    """The `RunConfig` of a call, its limits checked and named by this pipeline's arguments."""
    try:
        check_knobs(knobs, source="FlashVideoRefinePipeline", names=ARGUMENTS)
    except BadInput as exc:
        raise BadPipelineInput(str(exc)) from exc
    return RunConfig(**knobs)


class FlashVideoRefinePipeline(DiffusionPipeline, CogVideoXLoraLoaderMixin):
    """FlashVideo stage II: a low-resolution clip (at most one window) refined to 1080p.

    Components: `tokenizer` and `text_encoder` (transformers' T5 v1.1), `vae` (diffusers'
    `AutoencoderKLCogVideoX`, scaling factor 1.15258426), `transformer`
    (`FlashVideoTransformer3DModel`) and `scheduler` (`FlashVideoFlowScheduler`).
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler) -> None:  # noqa: ANN001
        """Register the five components (diffusers loads them from a folder)."""
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )

    def encode_prompt(self, prompt: str, device: torch.device) -> torch.Tensor:
        """T5 states (1, 226, D) of `prompt`: padded to 226 tokens, no attention mask (§7)."""
        encoder = T5TextEncoder(self.text_encoder, self.tokenizer, folder=Path("."))
        encoder.set_device(device)
        return encoder.encode([prompt]).embeddings

    def _models(self, attention_kwargs: dict | None) -> _Models:
        def dit(x, index, context, *, num_frames, ref_step):  # noqa: ANN001, ANN202
            out = self.transformer(
                x, context, index, num_frames, ref_step, attention_kwargs, return_dict=False
            )
            return out[0]

        device = self._execution_device
        return _Models(_CausalVAE(self.vae), dit, device, self.transformer.dtype, self.vae.dtype)

    @torch.no_grad()
    def __call__(
        self,
        video: Any,
        prompt: str = "",
        num_inference_steps: int = 4,
        guidance_scale: float = 13.0,
        strength_step: int = 675,
        shift: float | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int = WINDOW_FRAMES,
        generator: torch.Generator | None = None,
        prompt_embeds: torch.Tensor | None = None,
        posterior: str = "sample",
        vae_mode: str = "blend",
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
    ) -> FlashVideoPipelineOutput | tuple:
        """Refine `video` (see `frames.ACCEPTED`; at most `num_frames` frames).

        Args:
            video: the low-resolution clip; shorter than `num_frames`, it is padded with its
                last frame, as `Refiner` pads a short clip, and cropped back.
            prompt: the caption (the original script prepends "medium motion,").
            num_inference_steps: Euler steps; the original runs 5, its README says 4.
            guidance_scale: constant classifier-free guidance with a zero uncond (spec §5.3).
            strength_step: the degradation step of the start latent (600..750, spec §5.2).
            shift: the time shift of the grid (None: the scheduler's, 2.5).
            height: output height; with `width` the exact size (else 1080p, aspect kept).
            width: output width.
            num_frames: the window length, 1 + 4k (49: what the DiT was trained on).
            generator: its `initial_seed()` is `Refiner`'s seed (see `seed_of`).
            prompt_embeds: (1, 226, D) T5 states instead of `prompt`.
            posterior: "sample" the VAE posterior (the original) or take its "mean".
            vae_mode: `Refiner`'s VAE slicing, "blend" (chunks of 16 frames / 2 latents),
                "faithful" (the original's chunks and hard-seam width split) or "whole";
                after `vae.enable_tiling()` diffusers' tiles are used instead.
            output_type: "np" (T, H, W, 3) floats in [0, 1], "pil", "pt" (T, 3, H, W) or
                "latent" (the final latents (T, C, h, w)).
            return_dict: a `FlashVideoPipelineOutput` (else a tuple of frames).
            attention_kwargs: `{"scale": s}` for loaded LoRA adapters.
            callback_on_step_end: called as f(pipe, step, timestep, tensors) after each step;
                a returned "latents" replaces the state.
            callback_on_step_end_tensor_inputs: names passed in `tensors` ("latents").
        """
        if output_type not in OUTPUT_TYPES:
            raise BadPipelineInput(f"output_type {output_type!r} is not one of {OUTPUT_TYPES}")
        shift = self.scheduler.config.shift if shift is None else shift
        config = run_config(
            steps=num_inference_steps,
            cfg_scale=float(guidance_scale),
            strength=strength_step,
            shift=float(shift),
            seed=seed_of(generator),
            posterior=posterior,
            vae_mode=vae_mode,
            timestep_rounding=self.scheduler.config.timestep_rounding,
        )
        frames = as_frames(video)
        window = window_of(frames, num_frames)
        geometry = plan_geometry(frames.shape[1:3], _size(height, width), aspect="keep")
        models = self._models(attention_kwargs)
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt, models.device)
        vae_plan = plan_vae(geometry.model_hw, len(window), mode=config.vae_mode)
        video_in = frames_to_model_input(window, geometry, models.device)
        latents = degraded_start(models, config, video_in, vae_plan, window_index=0, first_latent=0)
        step = _StepCallback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        latents = self.denoise(models, config, latents, prompt_embeds, step)
        if output_type == "latent":
            out = latents
        else:
            out = self.postprocess(
                decode_to_frames(models, latents, geometry, vae_plan), len(frames), output_type
            )
        self.maybe_free_model_hooks()
        return FlashVideoPipelineOutput(frames=out) if return_dict else (out,)

    def denoise(
        self,
        models: _Models,
        config: RunConfig,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        on_step: _StepCallback,
    ) -> torch.Tensor:
        """Euler over the scheduler's grid with guided velocities (spec §5.3)."""
        self.scheduler.set_timesteps(config.steps, models.device, shift=config.shift)
        velocity = guided_velocity(
            models, config, prompt_embeds, num_latent=latents.shape[1], cfg_batched=True
        )
        with self.progress_bar(total=config.steps) as bar:
            on_step.bar = bar
            return sample_euler(velocity, latents, self.scheduler.t_grid, callback=on_step)

    def postprocess(self, frames: np.ndarray, real: int, output_type: str) -> Any:
        """Decoded uint8 frames -> the first `real` as `output_type`, batched: `.frames[0]`."""
        array = frames[:real].astype(np.float32) / 255.0  # the levels `Refiner` writes
        if output_type == "pil":
            return [self.numpy_to_pil(array)]
        if output_type == "pt":
            return torch.from_numpy(array).permute(0, 3, 1, 2)[None]
        return array[None]


class _StepCallback:
    """`sample_euler`'s callback: the progress bar and diffusers' `callback_on_step_end`."""

    def __init__(self, pipe: FlashVideoRefinePipeline, user: Callable | None, names: Any) -> None:
        unknown = set(names) - set(pipe._callback_tensor_inputs)
        if unknown:
            raise BadPipelineInput(f"callback_on_step_end_tensor_inputs: unknown {sorted(unknown)}")
        self.pipe, self.user, self.names, self.bar = pipe, user, list(names), None

    def __call__(self, index: int, t_next: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        if self.bar is not None:
            self.bar.update()
        if self.user is None:
            return None
        timestep = self.pipe.scheduler.timesteps[index]
        tensors = {"latents": x} if "latents" in self.names else {}
        returned = self.user(self.pipe, index, timestep, tensors) or {}
        return returned.get("latents")


__all__ = ["FlashVideoPipelineOutput", "FlashVideoRefinePipeline", "seed_of", "window_of"]
