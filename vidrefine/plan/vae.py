"""How the causal VAE covers a clip: spatial tiles and temporal chunks sized to a memory budget
(`VAEPlan`, pure arithmetic). `pipeline.vae_pass` runs a plan (spec §6.5 for the original's).
"""

from __future__ import annotations

from dataclasses import dataclass

from vidrefine.config import VAE_CONVS, VAE_LAYOUTS, VAE_MODES, RunConfig
from vidrefine.errors import BadInput, DoesNotFit
from vidrefine.plan.chunking import (
    FAITHFUL_DECODE_CHUNK_LATENT,
    FAITHFUL_ENCODE_CHUNK_FRAMES,
    TIME_FACTOR,
    Chunk,
    grid_frames,
    plan_decode_chunks,
    plan_encode_chunks,
)
from vidrefine.plan.geometry import SPATIAL, ceil_to
from vidrefine.plan.tiling import TilePlan, plan_split, plan_tiles
from vidrefine.plan.vae_memory import (
    DEVICE_FACTOR,
    decode_peak_bytes,
    encode_peak_bytes,
    fixed_bytes,
)

MODES = VAE_MODES
FAITHFUL_MARGIN_LATENT = 16  # the original's decode tile overlap (spec §6.5)
_GB = 1024**3


@dataclass(frozen=True)
class VAEKernelPlan:
    """How the VAE's operators run (issue 21): the same math, speed and memory differ.

    `conv`: "auto" (CPU: one conv3d call, the numbers of earlier releases; CUDA: conv3d or a
    sum of conv2d calls, whichever a one-time measurement per layer shape finds faster),
    "conv3d" or "conv2d_sum". `cap_mi`: the most Mi elements (2**20) one conv call may read
    (time chunks with the causal halo); 0 = the device's default (CUDA 2048, CPU no cap).
    `layout`: "ncdhw", "ndhwc" (channels-last 3D end to end), "auto" = ncdhw (NDHWC is not yet
    measured faster on a GPU, docs/performance.md). `compile`: fused GroupNorm(+SpatialNorm)+SiLU
    through torch.compile. `device` ("cuda" or "cpu") resolves "auto" for the memory estimate and
    sets its device factor (`vae_memory`); the pass itself resolves by the tensors' device.
    """

    conv: str = "auto"
    cap_mi: int = 0
    layout: str = "auto"
    compile: bool = False
    device: str = "cuda"

    def __post_init__(self) -> None:
        """Refuse values no kernel exists for."""
        if self.conv not in VAE_CONVS:
            raise BadInput(f"VAE conv {self.conv!r} is not one of {', '.join(VAE_CONVS)}")
        if self.layout not in VAE_LAYOUTS:
            raise BadInput(f"VAE layout {self.layout!r} is not one of {', '.join(VAE_LAYOUTS)}")
        if self.cap_mi < 0:
            raise BadInput(f"VAE conv cap {self.cap_mi} must be 0 (the device's) or more")
        if self.device not in DEVICE_FACTOR:
            raise BadInput(f"VAE device {self.device!r} is not one of {', '.join(DEVICE_FACTOR)}")

    def memory_args(self) -> dict:
        """The `vae_memory` path, call cap and device this plan's passes run with."""
        cuda = self.device == "cuda"
        path = self.conv if self.conv != "auto" else ("measured" if cuda else "conv3d")
        cap_mi = self.cap_mi or (CUDA_CAP_MI if cuda else 0)
        return {"path": path, "cap_elements": cap_mi * 2**20, "device": self.device}


CUDA_CAP_MI = 2048  # "auto" on CUDA: no conv call reads more than 2**31 elements (32-bit indexing)


def vae_kernel_plan(config: RunConfig, device_kind: str = "cuda") -> VAEKernelPlan:
    """The VAE kernel choices a run config asks for on a "cuda" or "cpu" device (`compile`
    covers the VAE's norms too).
    """
    return VAEKernelPlan(
        conv=config.vae_conv,
        cap_mi=config.vae_conv_cap_mi,
        layout=config.vae_layout,
        compile=config.compile,
        device=device_kind,
    )


@dataclass(frozen=True)
class VAEPlan:
    """How one clip of `frames` x `size_hw` is encoded and decoded (all sizes before padding).

    Tiles are in latent coordinates of the padded clip; chunk lengths are pixel frames (encode)
    and latent frames (decode). `estimate_gb` is the planned peak of the larger pass.
    `kernels` says how the operators run, which changes no decision above.
    """

    mode: str
    size_hw: tuple[int, int]
    frames: int
    encode_tiles: TilePlan
    decode_tiles: TilePlan
    encode_chunk_frames: int
    decode_chunk_latent: int
    estimate_gb: float
    kernels: VAEKernelPlan = VAEKernelPlan()

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Pixel size after replicate padding to multiples of 8."""
        return (ceil_to(self.size_hw[0], SPATIAL), ceil_to(self.size_hw[1], SPATIAL))

    @property
    def padded_frames(self) -> int:
        """Frame count after replicate padding to 1 + 4k."""
        return grid_frames(self.frames)

    @property
    def latent_hw(self) -> tuple[int, int]:
        """Latent (height, width)."""
        return (self.padded_hw[0] // SPATIAL, self.padded_hw[1] // SPATIAL)

    @property
    def latent_frames(self) -> int:
        """Latent frame count, 1 + (padded_frames - 1) / 4."""
        return 1 + (self.padded_frames - 1) // TIME_FACTOR

    def encode_chunks(self) -> tuple[Chunk, ...]:
        """Pixel-frame chunks of the padded clip."""
        return plan_encode_chunks(self.padded_frames, self.encode_chunk_frames)

    def decode_chunks(self) -> tuple[Chunk, ...]:
        """Latent-frame chunks."""
        return plan_decode_chunks(self.latent_frames, self.decode_chunk_latent)


def _peaks(plan_bits: dict, cost: dict) -> float:
    """Largest planned pass (encode or decode) in bytes; `cost`: the vae_memory keywords."""
    enc_frames = 1 + plan_bits["encode_chunk_frames"]
    dec_frames = 1 + TIME_FACTOR * plan_bits["decode_chunk_latent"]
    enc_hw = tuple(SPATIAL * s for s in plan_bits["encode_tiles"].tile_hw)
    dec_hw = tuple(SPATIAL * s for s in plan_bits["decode_tiles"].tile_hw)
    return max(
        encode_peak_bytes(enc_frames, enc_hw, **cost),
        decode_peak_bytes(dec_frames, dec_hw, **cost),
    )


def _fit_tile(
    latent_hw: tuple[int, int], frames: int, room: float, cost: dict, *, decode: bool
) -> int:
    """Largest square tile (latent, multiple of 8, >= 8) whose pass fits in `room` bytes."""
    peak = decode_peak_bytes if decode else encode_peak_bytes
    for tile in range(ceil_to(max(latent_hw), 8), 7, -8):
        window = (SPATIAL * min(tile, latent_hw[0]), SPATIAL * min(tile, latent_hw[1]))
        if peak(frames, window, **cost) <= room:
            return tile
    raise DoesNotFit(
        f"the VAE needs more than the {room / _GB:.1f} GB left for it even with 8-latent tiles;"
        " raise --vram-gb or lower the output size"
    )


def plan_vae(
    size_hw: tuple[int, int],
    frames: int,
    *,
    budget_gb: float | None = None,
    mode: str = "blend",
    tile_latent: int = 0,
    overlap_latent: int = 8,
    chunk_latent: int = 0,
    dtype_bytes: int = 2,
    faithful_splits_hw: tuple[int, int] = (1, 2),
    kernels: VAEKernelPlan = VAEKernelPlan(),
) -> VAEPlan:
    """Plan encoding and decoding a clip of `frames` x `size_hw` pixels.

    Modes: "blend" (cosine-feathered tiles and chunks sized to `budget_gb`, None = no limit),
    "faithful" (the original: encode chunks [17, 16, 16], decode latents [0:3] then pairs,
    `faithful_splits_hw` tiles with a 16-latent margin and hard seams, spec §6.5) and "whole"
    (one pass each way). `tile_latent`/`chunk_latent` 0 = planned; chunk_latent n means decode
    chunks of n latents and encode chunks of 4n frames (planned: 2 and 16, the original's).
    `kernels` travels with the plan to the pass (`pipeline.vae_pass.vae_kernels`).
    """
    if mode not in MODES:
        raise BadInput(f"unknown VAE mode {mode!r}; use one of {', '.join(MODES)}")
    if frames < 1 or min(size_hw) < 1:
        raise BadInput(f"cannot plan a VAE pass for {frames} frames of {size_hw[1]}x{size_hw[0]}")
    latent_hw = (ceil_to(size_hw[0], SPATIAL) // SPATIAL, ceil_to(size_hw[1], SPATIAL) // SPATIAL)
    single = plan_tiles(latent_hw, (0, 0), 0)
    bits: dict = {"encode_tiles": single, "decode_tiles": single}
    if mode == "whole":
        bits |= {"encode_chunk_frames": 0, "decode_chunk_latent": 0}
    elif mode == "faithful":
        bits |= {
            "encode_chunk_frames": FAITHFUL_ENCODE_CHUNK_FRAMES,
            "decode_chunk_latent": FAITHFUL_DECODE_CHUNK_LATENT,
            "decode_tiles": plan_split(latent_hw, faithful_splits_hw, FAITHFUL_MARGIN_LATENT),
        }
    cost = {"dtype_bytes": dtype_bytes, **kernels.memory_args()}
    if mode == "blend":
        bits |= _blend_bits(
            latent_hw, frames, budget_gb, tile_latent, overlap_latent, chunk_latent, cost
        )
    padded = (SPATIAL * latent_hw[0], SPATIAL * latent_hw[1])
    whole_frames = grid_frames(frames)
    for key, value in (
        ("encode_chunk_frames", whole_frames - 1),
        ("decode_chunk_latent", (whole_frames - 1) // TIME_FACTOR),
    ):
        bits[key] = bits[key] or value  # 0 = one pass; size the estimate on the whole clip
    peak = _peaks(bits, cost) + fixed_bytes(whole_frames, padded, dtype_bytes=dtype_bytes)
    return VAEPlan(mode, tuple(size_hw), frames, estimate_gb=peak / _GB, kernels=kernels, **bits)


def _blend_bits(
    latent_hw: tuple[int, int],
    frames: int,
    budget_gb: float | None,
    tile_latent: int,
    overlap_latent: int,
    chunk_latent: int,
    cost: dict,
) -> dict:
    decode_chunk = chunk_latent or FAITHFUL_DECODE_CHUNK_LATENT
    encode_chunk = TIME_FACTOR * chunk_latent or FAITHFUL_ENCODE_CHUNK_FRAMES
    if tile_latent or budget_gb is None:
        enc_tile = dec_tile = tile_latent  # 0: one tile
    else:
        budget = budget_gb * _GB
        padded = (SPATIAL * latent_hw[0], SPATIAL * latent_hw[1])
        room = budget - fixed_bytes(grid_frames(frames), padded, dtype_bytes=cost["dtype_bytes"])
        dec_frames = min(grid_frames(frames), 1 + TIME_FACTOR * decode_chunk)
        enc_frames = min(grid_frames(frames), 1 + encode_chunk)
        dec_tile = _fit_tile(latent_hw, dec_frames, room, cost, decode=True)
        enc_tile = _fit_tile(latent_hw, enc_frames, room, cost, decode=False)
    return {
        "encode_chunk_frames": encode_chunk,
        "decode_chunk_latent": decode_chunk,
        "encode_tiles": plan_tiles(latent_hw, (enc_tile, enc_tile), overlap_latent),
        "decode_tiles": plan_tiles(latent_hw, (dec_tile, dec_tile), overlap_latent),
    }
