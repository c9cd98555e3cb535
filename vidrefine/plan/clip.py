"""One plan per clip: every decision about what will happen to it, made once from the probe,
the run config and the device, before any weight is loaded. The pipeline only reads it, and
`vidrefine info FILE --plan` prints exactly this object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from vidrefine.config import DiTConfig, RunConfig
from vidrefine.plan.geometry import OutputGeometry, plan_geometry
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.memory import MemoryInputs, MemoryPlan, plan_memory
from vidrefine.plan.vae import VAEPlan
from vidrefine.plan.windows import Window, WindowPlan

if TYPE_CHECKING:  # probing needs PyAV; planning does not
    from vidrefine.io.probe import MediaInfo


@dataclass(frozen=True)
class ModelPlacement:
    """How the models of a run are loaded: precisions (resolved, never "auto"), streaming, compile.

    One placement serves every clip of a batch: the models are loaded once.
    """

    dtype: str  # DiT and T5: "bf16" | "fp16" | "fp32"
    vae_dtype: str
    offload: str  # "none" | "layer" (transformer blocks stream from host memory)
    compile: bool = False


@dataclass(frozen=True)
class SourceFacts:
    """What planning needs to know of the frames a clip streams (from one probe, or an array)."""

    display_hw: tuple[int, int]
    frame_count: int
    fps: Fraction
    time_base: Fraction
    audio_streams: int = 0

    @classmethod
    def of_media(cls, info: MediaInfo) -> SourceFacts:
        """The facts of a probed file."""
        return cls(info.display_hw, info.frame_count, info.fps, info.time_base, len(info.audio))


@dataclass(frozen=True)
class OutputTiming:
    """How the output is timed: the source's timestamps, or the original's fixed 8 fps."""

    time_base: Fraction
    fps: Fraction
    source_pts: bool  # False: frame i is written at pts i (fps_mode "fixed8", spec §9.2)
    copy_audio: bool


@dataclass(frozen=True)
class ClipPlan:
    """Everything decided about one clip before any weight is loaded; the pipeline only reads it."""

    source: SourceFacts
    device: DeviceFacts
    geometry: OutputGeometry
    windowing: WindowPlan
    windows: tuple[Window, ...]
    memory: MemoryPlan
    models: ModelPlacement
    timing: OutputTiming

    @property
    def vae(self) -> VAEPlan:
        """Tiles and chunks of one window's VAE passes."""
        return self.memory.vae

    def line(self) -> str:
        """One log line: output size, windows and the memory plan."""
        h, w = self.geometry.output_hw
        windows = len(self.windows)
        return f"plan: {w}x{h}, {windows} window{'s' * (windows != 1)}, {self.memory.line()}"

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-safe data (`vidrefine info --plan --json`)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, float):
        return round(value, 6)
    return value


FAITHFUL_FPS = Fraction(8)  # the original writes every clip at 8 fps (spec §9.2)


def plan_timing(source: SourceFacts, config: RunConfig) -> OutputTiming:
    """The output's clock; audio is copied only with the source's timestamps."""
    if config.fps_mode == "fixed8":
        return OutputTiming(1 / FAITHFUL_FPS, FAITHFUL_FPS, False, False)
    return OutputTiming(source.time_base, source.fps, True, config.audio)


def plan_placement(config: RunConfig, device: DeviceFacts, offload: str) -> ModelPlacement:
    """Precisions resolved for the device, with the memory plan's offload."""
    dtype, vae_dtype = device.precision(config.dtype), device.precision(config.vae_dtype)
    return ModelPlacement(dtype, vae_dtype, offload, config.compile)


def plan_clip(
    source: SourceFacts,
    config: RunConfig,
    device: DeviceFacts,
    *,
    offload: str | None = None,
    stage1: tuple[DiTConfig, int] | None = None,
) -> ClipPlan:
    """Plan one clip. `offload` fixes the streaming choice (a batch loads its models once);
    `stage1` adds a t2v generator's DiT to the memory plan. Raises DoesNotFit or BadInput.
    """
    geometry = plan_geometry(source.display_hw, config.size, aspect=config.aspect)
    windowing = WindowPlan(config.window_latent, config.window_overlap_latent)
    dtype, vae_dtype = device.precision(config.dtype), device.precision(config.vae_dtype)
    inputs = MemoryInputs(geometry, config.window_latent, dtype, vae_dtype, device, stage1)
    memory = plan_memory(config, inputs, offload=offload)
    return ClipPlan(
        source=source,
        device=device,
        geometry=geometry,
        windowing=windowing,
        windows=windowing.windows(source.frame_count),
        memory=memory,
        models=plan_placement(config, device, memory.offload),
        timing=plan_timing(source, config),
    )


def plan_batch(
    sources: Sequence[SourceFacts], config: RunConfig, device: DeviceFacts
) -> tuple[ClipPlan, ...]:
    """One plan per clip, all with the model placement the most demanding clip needs (the
    models of a batch are loaded once).
    """
    alone = [plan_clip(source, config, device) for source in sources]
    if len({plan.models for plan in alone}) <= 1:
        return tuple(alone)
    neediest = max(alone, key=lambda plan: (plan.models.offload == "layer", plan.memory.tokens))
    offload = neediest.models.offload
    return tuple(plan_clip(source, config, device, offload=offload) for source in sources)
