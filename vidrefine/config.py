"""Frozen configuration: model architectures (code, not settings) and the run knobs presets set.

Every `RunConfig` knob is declared here with its limits, and a `RunConfig` checks them when it
is built (from a preset, flags or Python), before anything is loaded. Modules that act on a
knob read its allowed values from here (`VAE_MODES`, `OFFLOADS`, ...) instead of keeping a copy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from vidrefine.errors import BadInput

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "config") -> T:
    """Build dataclass `cls` from `data`, naming any unknown key and where it came from."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**data)


@dataclass(frozen=True)
class VAEConfig:
    """CogVideoX 3D causal VAE shape (flashvideo-spec §6); the official one is `OFFICIAL_VAE`."""

    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 3  # encoder resnets per level; the decoder has one more
    latent_channels: int = 16
    in_channels: int = 3
    norm_groups: int = 32
    norm_eps: float = 1e-6
    time_compress_levels: int = 2  # levels that also halve time: 2 -> 4x temporal compression

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent along height and width (8 for the official VAE)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first (4 for the official VAE)."""
        return 2**self.time_compress_levels


OFFICIAL_VAE = VAEConfig()


@dataclass(frozen=True)
class DiTConfig:
    """CogVideoX-style DiT shape (flashvideo-spec §2-3); stage I and II differ only here."""

    hidden_size: int
    num_layers: int
    num_heads: int
    time_embed_dim: int = 512
    text_dim: int = 4096
    text_length: int = 226
    patch_size: int = 2
    in_channels: int = 16
    out_channels: int = 16
    mlp_ratio: int = 4
    stage2_embeddings: bool = False  # time_size_embedding + ref_step_time_embedding (spec §3.3)

    @property
    def head_dim(self) -> int:
        """Width of one attention head (64 in both stages)."""
        return self.hidden_size // self.num_heads


STAGE1_DIT = DiTConfig(hidden_size=3072, num_layers=42, num_heads=48)
STAGE2_DIT = DiTConfig(hidden_size=1920, num_layers=30, num_heads=30, stage2_embeddings=True)

# Latent scale factors belong to the pipeline, not the VAE (spec §6.4).
STAGE1_LATENT_SCALE = 0.7
STAGE2_LATENT_SCALE = 1.15258426


# Allowed values of the run knobs (each used where the knob acts; see the field comments).
ASPECTS = ("keep", "stretch")
FPS_MODES = ("source", "fixed8")
CODECS = ("h264", "hevc")
PIX_FMTS = ("yuv420p", "yuv420p10le")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
TIMESTEP_ROUNDINGS = ("bf16", "exact")
POSTERIORS = ("sample", "mean")
PRECISIONS = ("bf16", "fp16", "fp32")
OFFLOADS = ("none", "layer")
ATTENTION_KERNELS = ("auto", "cudnn", "flash", "efficient", "math", "flash_attn", "int8")
VAE_MODES = ("blend", "faithful", "whole")
VAE_CONVS = ("auto", "conv3d", "conv2d_sum")  # vidrefine/models/vae_conv.py, docs/vae.md
VAE_LAYOUTS = ("auto", "ncdhw", "ndhwc")
STAGE1_GUIDANCE = ("dynamic", "faithful")
COLOR_FIXES = ("none", "adain", "wavelet")  # vidrefine/quality/colorfix.py, docs/quality.md
STRENGTH_RANGE = (600, 750)  # degradation step indices the authors suggest (spec §5.2, §9.3)


@dataclass(frozen=True)
class SizeRequest:
    """What `--size` asked for: a short side (aspect kept) or an exact (height, width)."""

    short_side: int | None = None
    exact_hw: tuple[int, int] | None = None


NAMED_SHORT_SIDES = {"480p": 480, "540p": 540, "720p": 720, "1080p": 1080, "1440p": 1440}
_SHORT_SIDE = re.compile(r"^\s*(\d+)p\s*$")
_WXH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> SizeRequest:
    """Parse `--size`: "1080p"-style short sides, or "WIDTHxHEIGHT" (converted to (h, w))."""
    key = text.strip().lower()
    if key in NAMED_SHORT_SIDES:
        return SizeRequest(short_side=NAMED_SHORT_SIDES[key])
    match = _SHORT_SIDE.match(key)
    if match:
        short = int(match.group(1))
        if not 64 <= short <= 4320:
            raise BadInput(f"--size {text}: the short side must be between 64p and 4320p")
        return SizeRequest(short_side=short)
    match = _WXH.match(key)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if not (64 <= width <= 8192 and 64 <= height <= 8192):
            raise BadInput(f"--size {text}: width and height must be between 64 and 8192")
        return SizeRequest(exact_hw=(height, width))
    names = ", ".join(NAMED_SHORT_SIDES)
    raise BadInput(f"--size {text!r} is not a size; use {names} (any Np) or WIDTHxHEIGHT")


def replace(cfg: T, **changes: Any) -> T:
    """Return a copy of frozen dataclass `cfg` with `changes` applied."""
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class RunConfig:
    """Run knobs set by `presets/*.toml` and CLI flags (defaults < preset < flags).

    `faithful` values reproduce the original FlashVideo scripts; see presets/faithful.toml.
    """

    # Output picture and timing.
    size: str = "1080p"  # "720p" | "1080p" | "1440p" | "WxH"
    aspect: str = (
        "keep"  # "keep" (pad and crop back) | "stretch" (the original's resize, spec §10.1)
    )
    fps_mode: str = "source"  # "source" (timestamps kept) | "fixed8" (the original writes 8 fps)
    audio: bool = True  # copy or re-encode every audio stream (the original drops audio)
    codec: str = "h264"  # "h264" | "hevc"
    pix_fmt: str = "yuv420p"  # "yuv420p" | "yuv420p10le"
    crf: int = 18
    encoder_preset: str = "medium"
    # Stage-II sampling (spec §5).
    steps: int = 4
    shift: float = 2.5
    cfg_scale: float = 13.0
    strength: int = 675  # degradation step index on the zero-SNR table, 600..750
    # "bf16": t, the network timestep and the reference step are bf16-rounded, as in training and
    # the release (spec §5.4: training drew t in bf16, so 675 is only ever seen as 676);
    # "exact": float64 grid and unrounded network inputs, for experiments.
    timestep_rounding: str = "bf16"
    caption_prefix: str = ""  # the original script prepends "medium motion," (spec §5.6)
    seed: int = 0
    posterior: str = "sample"  # "sample" (the original, spec §5.1) | "mean" of the VAE posterior
    # Precision and memory.
    dtype: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp16" | "fp32"
    vae_dtype: str = "auto"
    vram_gb: float | None = None  # memory budget for planning; None = what the device has
    offload: str = "none"  # "none" | "layer" (DiT and T5 blocks stream from host memory)
    # Speed (issue 7, docs/performance.md); none of these changes the sampled numbers beyond
    # kernel rounding.
    cfg_batched: bool = True  # CFG passes as one batch of 2 (faster) or in turn (less memory)
    # SDPA kernel tried first: auto | cudnn | flash | efficient | math; or an installed package's
    # kernel: flash_attn (FlashAttention 3/2) | int8 (SageAttention 2, opt-in: 8-bit QK^T)
    attention: str = "auto"
    compile: bool = False  # torch.compile DiT blocks (and VAE norm+SiLU); the first window compiles
    background_io: bool = True  # decode the next input and encode the last output on threads
    # Colour fix of each decoded window against its input (docs/quality.md).
    color_fix: str = "none"  # "none" | "adain" (Lab mean/std) | "wavelet" (input low frequencies)
    # Shots (docs/pipeline.md "Shots"): each shot between hard cuts gets its own windows.
    shots: bool = True  # detect hard cuts (PySceneDetect) and never let a window span one
    cut_threshold: float = 3.0  # AdaptiveDetector's ratio a cut's change exceeds its neighbours'
    # Windows over time (latent frames) and VAE tiling.
    window_latent: int = 13  # 13 latent frames = 49 pixel frames, the size the DiT was trained on
    window_overlap_latent: int = 4
    vae_mode: str = "blend"  # "blend" (feathered tiles) | "faithful" (hard seams) | "whole"
    vae_tile_latent: int = 0  # 0 = planned from the memory budget
    vae_tile_overlap_latent: int = 8
    vae_chunk_latent: int = 0  # 0 = planned from the memory budget
    # How the VAE's operators run (issue 21, docs/vae.md "Kernels"); same math either way.
    vae_conv: str = "auto"  # "auto" (CPU conv3d; CUDA measured per layer) | "conv3d" | "conv2d_sum"
    vae_conv_cap_mi: int = 0  # Mi elements one conv call reads at most; 0 = CUDA 2048, CPU none
    vae_layout: str = "auto"  # "auto" (= ncdhw until a GPU shows NDHWC pays) | "ncdhw" | "ndhwc"
    # Stage I (`vidrefine t2v`, spec §4).
    stage1_cfg_scale: float = 8.0  # the original's stage-I guidance scale (spec §4.3, §9.2)
    stage1_guidance: str = "dynamic"  # "dynamic" (monotone schedule) | "faithful" (spec §4.3 table)
    # LoRA adapters of `vidrefine tune` merged into the stage-II DiT, as "FILE[:SCALE]" (docs/
    # training.md "Using the result"); a TOML list or repeated --lora flags.
    lora: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check every knob; a float knob given as an int (TOML `shift = 3`) becomes a float,
        a list (TOML's `lora = [...]`) a tuple.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if "float" in str(f.type) and type(value) is int:
                object.__setattr__(self, f.name, float(value))
            if f.name == "lora" and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        check_knobs(dataclasses.asdict(self), source="settings")


# Checks of single knob values: each returns a complaint, or None when the value is fine.
Check = Callable[[Any], "str | None"]


def resolve_precision(name: str, device_kind: str) -> str:
    """A precision knob resolved for a device kind: "auto" is bf16 on "cuda", fp32 elsewhere."""
    if name != "auto":
        return name
    return "bf16" if device_kind == "cuda" else "fp32"


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def _size(value: str) -> str | None:
    try:
        parse_size(value)
    except BadInput as exc:
        return str(exc).split(": ", 1)[-1]
    return None


LIMITS: dict[str, Check] = {
    "size": _size,
    "aspect": _one_of(*ASPECTS),
    "fps_mode": _one_of(*FPS_MODES),
    "codec": _one_of(*CODECS),
    "pix_fmt": _one_of(*PIX_FMTS),
    "crf": _between(0, 51),
    "encoder_preset": _one_of(*X264_PRESETS),
    "steps": _between(1, 100),
    "shift": _between(0.05, 20.0),
    "cfg_scale": _between(1.0, 50.0),
    "strength": _between(*STRENGTH_RANGE),
    "timestep_rounding": _one_of(*TIMESTEP_ROUNDINGS),
    "seed": _between(0, 2**63 - 1),
    "posterior": _one_of(*POSTERIORS),
    "dtype": _one_of("auto", *PRECISIONS),
    "vae_dtype": _one_of("auto", *PRECISIONS),
    "vram_gb": lambda v: None if v is None else _between(0.5, 4096.0)(v),
    "offload": _one_of(*OFFLOADS),
    "attention": _one_of(*ATTENTION_KERNELS),
    "cut_threshold": _between(1.0, 50.0),  # lower finds more cuts
    "window_latent": _between(2, 64),  # >= 2: a window must overlap the next one
    "window_overlap_latent": _between(1, 63),  # >= 1: latent 0 is never fused (windows.py)
    "vae_mode": _one_of(*VAE_MODES),
    "vae_tile_latent": lambda v: None if v == 0 or v >= 8 else "must be 0 (planned) or >= 8",
    "vae_tile_overlap_latent": _between(0, 64),
    "vae_chunk_latent": _between(0, 64),
    "vae_conv": _one_of(*VAE_CONVS),
    "vae_conv_cap_mi": _between(0, 2**20),
    "vae_layout": _one_of(*VAE_LAYOUTS),
    "stage1_cfg_scale": _between(1.0, 50.0),
    "stage1_guidance": _one_of(*STAGE1_GUIDANCE),
    "color_fix": _one_of(*COLOR_FIXES),
    "lora": lambda v: None if all(isinstance(x, str) and x for x in v) else "must be FILE[:SCALE]",
}

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
    "tuple[str, ...]": (tuple, list),
}


def knob_complaint(key: str, value: Any) -> str | None:
    """Why `value` cannot be `RunConfig` knob `key` (wrong type or out of its limits), or None."""
    annotation = {f.name: str(f.type) for f in fields(RunConfig)}[key]
    kinds = [k.strip() for k in annotation.split("|")]
    allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
    if isinstance(value, bool) and bool not in allowed:
        return f"must be {' or '.join(kinds)}, not a boolean"
    if not isinstance(value, allowed):
        return f"must be {' or '.join(kinds)}"
    return LIMITS[key](value) if key in LIMITS else None


def check_knobs(
    data: Mapping[str, Any], *, source: str, names: Mapping[str, str] | None = None
) -> None:
    """Raise BadInput naming the first unknown key or bad value and `source` (a file, flags).

    `names` maps keys to what the user typed (e.g. `strength` -> `--strength`).
    """
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    for key, value in data.items():
        complaint = knob_complaint(key, value)
        if complaint is not None:
            shown = (names or {}).get(key, key)
            raise BadInput(f"{source}: {shown} = {value!r}: {complaint}")
    _check_window(data, source)


def _check_window(data: Mapping[str, Any], source: str) -> None:
    window, overlap = data.get("window_latent"), data.get("window_overlap_latent")
    if window is not None and overlap is not None and overlap >= window:
        raise BadInput(
            f"{source}: window_overlap_latent ({overlap}) must be smaller than "
            f"window_latent ({window})"
        )
