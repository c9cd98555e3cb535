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

from vidrefine.config import STAGE2_DIT, DiTConfig, RunConfig
from vidrefine.plan.geometry import OutputGeometry, plan_geometry
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.memory import MemoryInputs, MemoryPlan, plan_memory
from vidrefine.plan.ranks import RankLayout, assign_windows
from vidrefine.plan.shots import Shot, plan_shots
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
    cuts: tuple[int, ...] = ()  # frames where a shot starts after a hard cut (io/shots.py)

    @classmethod
    def of_media(cls, info: MediaInfo, cuts: tuple[int, ...] = ()) -> SourceFacts:
        """The facts of a probed file, with the hard cuts found in it (if detection ran)."""
        media = (info.display_hw, info.frame_count, info.fps, info.time_base, len(info.audio))
        return cls(*media, cuts=cuts)


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
    layout: RankLayout = RankLayout()  # the ranks sharing the clip; `memory` is per rank
    shots: tuple[Shot, ...] = ()  # one per window segment (plan/shots.py)

    @property
    def vae(self) -> VAEPlan:
        """Tiles and chunks of one window's VAE passes."""
        return self.memory.vae

    def line(self) -> str:
        """One log line: output size, windows and the memory plan."""
        h, w = self.geometry.output_hw
        windows = len(self.windows)
        ranks = f", {self.layout.line()}" if self.layout.ranks > 1 else ""
        line = f"plan: {w}x{h}, {windows} window{'s' * (windows != 1)}{ranks}"
        return f"{line}, {self.memory.line()}"

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-safe data (`vidrefine info --plan --json`).

        The host memory free when planned is left out: a measurement of the moment, which the
        plan was checked against, not one of its decisions.
        """
        data = dataclasses.asdict(self)
        data["device"].pop("host_available_gb", None)
        return _jsonable(data)


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


def plan_clip(
    source: SourceFacts,
    config: RunConfig,
    device: DeviceFacts,
    *,
    offload: str | None = None,
    stage1: tuple[DiTConfig, int] | None = None,
    layout: RankLayout | None = None,
    captioner_gb: float = 0.0,
) -> ClipPlan:
    """Plan one clip. `offload` fixes the streaming choice (a batch loads its models once);
    `stage1` adds a t2v generator's DiT to the memory plan; `layout` plans for the ranks that
    share the clip (windows per rank, memory per rank); `captioner_gb` adds the "captioner"
    phase of `--caption auto`. Raises DoesNotFit or BadInput.
    """
    layout = layout or RankLayout()
    layout.check_heads(STAGE2_DIT.num_heads)
    geometry = plan_geometry(source.display_hw, config.size, aspect=config.aspect)
    windowing = WindowPlan(config.window_latent, config.window_overlap_latent)
    dtype, vae_dtype = device.precision(config.dtype), device.precision(config.vae_dtype)
    inputs = MemoryInputs(
        geometry,
        config.window_latent,
        dtype,
        vae_dtype,
        device,
        stage1,
        captioner_gb=captioner_gb,
        guidance_ranks=layout.guidance_ranks,
        sequence_ranks=layout.sequence_ranks,
    )
    memory = plan_memory(config, inputs, offload=offload)
    shots = plan_shots(source.cuts if config.shots else (), source.frame_count, source.fps)
    starts = [shot.start_frame for shot in shots]
    return ClipPlan(
        source=source,
        device=device,
        geometry=geometry,
        windowing=windowing,
        windows=assign_windows(windowing.windows(source.frame_count, starts), layout),
        memory=memory,
        models=ModelPlacement(dtype, vae_dtype, memory.offload, config.compile),
        timing=plan_timing(source, config),
        layout=layout,
        shots=shots,
    )


def plan_batch(
    sources: Sequence[SourceFacts],
    config: RunConfig,
    device: DeviceFacts,
    layout: RankLayout | None = None,
    offload: str | None = None,
) -> tuple[ClipPlan, ...]:
    """One plan per clip, all with the model placement the most demanding clip needs (the
    models of a batch are loaded once); `layout`: the ranks sharing each clip; `offload` fixes
    the streaming choice instead (a rerun's clips keep their batch's).
    """
    if offload is None:
        alone = [plan_clip(source, config, device, layout=layout) for source in sources]
        if len({plan.models for plan in alone}) <= 1:
            return tuple(alone)
        needy = max(alone, key=lambda plan: (plan.models.offload == "layer", plan.memory.tokens))
        offload = needy.models.offload
    return tuple(
        plan_clip(source, config, device, offload=offload, layout=layout) for source in sources
    )
