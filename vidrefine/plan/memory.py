"""Memory planner: predict GPU and host memory of a stage-II run before any weight is loaded.

Arithmetic only (the VAE's tiles and chunks come from `plan.vae.plan_vae`), so
`vidrefine info FILE --plan` answers in a second. Budgets are GiB (1024^3 bytes), like `--vram`.

Every size comes from `DeviceFacts.sizes`: the weight files a run found, else the official
models (`plan.model_sizes`). Terms of the prediction (docs/performance.md has the worked 1080p
numbers):
  * weights: DiT 1.70 B params, VAE 216 M, T5-XXL encoder 4.76 B, times the dtype's bytes;
    with layer offload only the non-block weights and two blocks of each transformer are on the
    GPU (T5: embeddings + 2 of 24 blocks, about 1 GB in bf16);
  * DiT activations: tokens S = T*(H/16)*(W/16) + 226 per sample, B = 2 with batched guidance;
    flash/cuDNN/CPU-flash attention keeps no S x S matrix, so the working set is linear:
    c * B * S * D bytes with c = 15 under bf16/fp16 autocast and 29 in plain fp32 (the blocks
    free their temporaries early and slice the MLP), plus the RoPE table,
    measured with `LiveTensorMemory` on the CPU (tests/test_planner.py re-measures it);
  * VAE: `vae_memory` per pass plus the clip accumulator, for the tiles `plan_vae` picks;
    written for the official widths, each pass's activations scale with its width;
  * runtime: CUDA context, cuBLAS/cuDNN workspaces and allocator slack, a flat 1.0 GiB;
  * host: on the CPU the whole run is host memory (the largest phase less the CUDA runtime,
    the decoded windows and the process itself); a run's plan that does not fit the memory
    free is refused before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vidrefine.config import STAGE2_DIT, DiTConfig, RunConfig
from vidrefine.errors import DoesNotFit
from vidrefine.plan.chunking import TIME_FACTOR, grid_frames
from vidrefine.plan.geometry import SPATIAL, OutputGeometry, ceil_to
from vidrefine.plan.hardware import HOST_VAE_SHARE, DeviceFacts
from vidrefine.plan.model_sizes import (
    OFFICIAL_VAE_PARAMS,
    T5_XXL_WIDTH,
    ModelSizes,
    dit_block_params,
    dit_param_count,
)
from vidrefine.plan.vae import VAEPlan, plan_vae, vae_kernel_plan
from vidrefine.plan.vae_memory import fixed_bytes

GB = 1024**3
T5_WORKING_GB = 0.3  # 226 tokens x 4096 wide: activations are small next to the weights
RUNTIME_GB = 1.0
# A CPU run's process before any model: Python, torch, PyAV and transformers imported (0.42 GiB
# measured) plus allocator, thread and codec buffers; a 64p run of tiny weights peaks at 0.64.
HOST_BASE_GB = 0.6
# DiT working set per token per hidden channel, measured with LiveTensorMemory (the peak is the
# attention call: qkv, the rotated q and k, the output); plus the RoPE table, shared by the batch.
ACT_BYTES = {"autocast": 15, "fp32": 29}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
PLAN_ORDER = (("none", True), ("none", False), ("layer", True), ("layer", False))


def dit_tokens(latent_frames: int, latent_hw: tuple[int, int], cfg: DiTConfig = STAGE2_DIT) -> int:
    """Tokens of one sample: video patches plus the text tokens."""
    p = cfg.patch_size
    return latent_frames * (latent_hw[0] // p) * (latent_hw[1] // p) + cfg.text_length


def dit_activation_bytes(tokens: int, batch: int, cfg: DiTConfig, *, autocast: bool) -> float:
    """Working set of one DiT call (no grad): linear in tokens with flash-type attention.

    Holds for sequences much longer than `dit_blocks.CHUNK_TOKENS` (1080p: 106k vs 8192 tokens),
    where the sliced MLP and qk prologue add little; the fp32 RoPE table is 4 * head_dim bytes
    a token, once for the batch.
    """
    per_channel = ACT_BYTES["autocast" if autocast else "fp32"] * batch * tokens * cfg.hidden_size
    return per_channel + 4 * cfg.head_dim * tokens


@dataclass(frozen=True)
class MemoryInputs:
    """What the memory plan is made of: the output geometry, the window, precisions, the device."""

    geometry: OutputGeometry
    window_latent: int
    dtype: str  # resolved: "bf16" | "fp16" | "fp32"
    vae_dtype: str
    device: DeviceFacts
    stage1: tuple[DiTConfig, int] | None = None  # t2v: the generator's DiT and tokens a sample
    captioner_gb: float = 0.0  # upscale --caption auto: the captioner's model and working memory
    guidance_ranks: int = 1  # ranks the two guidance branches are split over (plan.ranks)
    sequence_ranks: int = 1  # ranks the video tokens of one pass are split over (Ulysses)

    @property
    def frames(self) -> int:
        """Pixel frames of one window."""
        return 1 + TIME_FACTOR * (self.window_latent - 1)


@dataclass(frozen=True)
class MemoryPlan:
    """A predicted run: the choices made and the GiB each phase needs on the GPU and host."""

    tokens: int
    offload: str
    cfg_batched: bool
    vae: VAEPlan
    budget_gb: float | None
    phases_gb: dict[str, float] = field(default_factory=dict)  # "T5", "DiT", "VAE"
    parts_gb: dict[str, float] = field(default_factory=dict)
    host_gb: float = 0.0
    on_cpu: bool = False  # the run lives in host memory: `host_gb` is its peak

    @property
    def gpu_peak_gb(self) -> float:
        """The largest phase."""
        return max(self.phases_gb.values())

    @property
    def vae_tile_latent(self) -> int:
        """Side of the largest decode tile in latents; 0 = whole frame."""
        tiles = self.vae.decode_tiles
        return 0 if len(tiles.tiles) <= 1 else max(tiles.tile_hw)

    def line(self) -> str:
        """One log line for the start of a run."""
        cfg = "CFG batched" if self.cfg_batched else "CFG in turn"
        tile = f"VAE {self.vae.mode} tiles {self.vae_tile_latent or 'whole'}"
        budget = f" of {self.budget_gb:.1f}" if self.budget_gb else " (no budget given)"
        phases = ", ".join(f"{k} {v:.1f}" for k, v in self.phases_gb.items())
        head = f"{self.tokens:,} tokens a sample, {cfg}, offload {self.offload}, {tile}: "
        if self.on_cpu:
            return f"{head}on the CPU, host peak {self.host_gb:.1f} GB ({phases})"
        gpu = f"GPU peak {self.gpu_peak_gb:.1f} GB{budget} ({phases})"
        return f"{head}{gpu}, host {self.host_gb:.1f} GB"


def plan_memory(
    config: RunConfig, inputs: MemoryInputs, *, offload: str | None = None
) -> MemoryPlan:
    """The fastest plan that fits the device's budget (`--vram`, else its memory; CPU: none).

    Tried in order: everything resident with batched guidance, then guidance in turn, then
    layer streaming; the preset's `offload`/`cfg_batched` and a fixed `offload` (a batch whose
    models are loaded once) rule out options. Raises DoesNotFit naming what is too big when
    nothing fits. `inputs.stage1` adds the "stage I" phase of `vidrefine t2v`: the generator's
    DiT with batched guidance, streamed like stage II's when the plan streams.
    """
    budget = inputs.device.budget_gb(config.vram_gb)
    options = [
        (off, batched)
        for off, batched in PLAN_ORDER
        if (config.offload == "none" or off == "layer")
        and (batched if inputs.guidance_ranks > 1 else config.cfg_batched or not batched)
        and offload in (None, off)
    ]
    planned: list[MemoryPlan] = []
    failure = ""
    for off, batched in options:
        try:
            plan = _plan_one(config, inputs, budget, off, batched)
        except DoesNotFit as exc:
            failure = str(exc)
            continue
        planned.append(plan)
        if (budget is None or plan.gpu_peak_gb <= budget) and _fits_host(plan, inputs.device):
            return plan
    if planned and not any(_fits_host(plan, inputs.device) for plan in planned):
        raise DoesNotFit(_host_refusal(min(planned, key=lambda p: p.host_gb), inputs))
    smallest = planned[-1] if planned else None  # the last option tried needs the least
    raise DoesNotFit(_refusal(smallest, budget, failure, inputs.device))


def _fits_host(plan: MemoryPlan, device: DeviceFacts) -> bool:
    """Whether a CPU run's plan fits the host memory free (always, when not checked)."""
    return not device.checks_host or plan.host_gb <= device.free_host_gb


def _host_refusal(plan: MemoryPlan, inputs: MemoryInputs) -> str:
    device = inputs.device
    worst = max(plan.phases_gb, key=plan.phases_gb.get)
    return (
        f"on the CPU this run needs about {plan.host_gb:.1f} GB of memory (most of it in the "
        f"{worst} phase) and this machine has {device.free_host_gb:.1f} GB free of "
        f"{device.host_memory_gb:.1f} GB; lower --size, or run on a GPU"
    )


def _refusal(
    smallest: MemoryPlan | None, budget: float | None, failure: str, device: DeviceFacts
) -> str:
    if smallest is None and budget is None:
        return f"nothing fits in this machine's {device.host_memory_gb:.1f} GB: {failure}"
    if smallest is None:
        return f"nothing fits in {budget:.1f} GB: {failure}"
    worst = max(smallest.phases_gb, key=smallest.phases_gb.get)
    return (
        f"nothing fits in {budget:.1f} GB: the smallest plan (offload {smallest.offload}, "
        f"{'CFG batched' if smallest.cfg_batched else 'CFG in turn'}) needs "
        f"{smallest.gpu_peak_gb:.1f} GB, most of it in the {worst} phase; lower --size, "
        "or a GPU with more memory"
    )


def _dit_weights_gb(cfg: DiTConfig, offload: str, dtype_bytes: int) -> tuple[float, float, float]:
    """(all weights, block weights, weights on the GPU) of a DiT in GiB under `offload`."""
    everything = dit_param_count(cfg) * dtype_bytes / GB
    blocks = cfg.num_layers * dit_block_params(cfg) * dtype_bytes / GB
    on_gpu = everything if offload == "none" else everything - blocks * (1 - 2 / cfg.num_layers)
    return everything, blocks, on_gpu


def rank_activation_gb(tokens: int, batched: bool, inputs: MemoryInputs) -> tuple[float, float]:
    """(activations, all-to-all buffers) in GiB of one rank's share of a stage-II DiT pass.

    Guidance ranks hold one branch each; k sequence ranks hold ceil(S / k) tokens of each layer
    and, in attention, all S tokens of n / k heads: both about 1 / k. Their all-to-all keeps a
    sent and a received copy of the local q, k and v (6 D values a local token).
    """
    branches = max(1, (2 if batched else 1) // inputs.guidance_ranks)
    k = inputs.sequence_ranks
    share = -(-tokens // k)
    autocast = DTYPE_BYTES[inputs.dtype] == 2
    dit = inputs.device.sizes.dit
    act = dit_activation_bytes(share, branches, dit, autocast=autocast) / GB
    if k == 1:
        return act, 0.0
    width = dit.hidden_size * DTYPE_BYTES[inputs.dtype]
    return act, 6 * share * branches * width / GB


def _vae_plan(config: RunConfig, inputs: MemoryInputs, room_gb: float | None) -> VAEPlan:
    """The VAE's tiles and chunks for one window in `room_gb` (None: the host's share, CPU).

    `plan_vae` sizes passes of the official widths: for another VAE the room its activations
    may take is translated into official terms (`ModelSizes.vae_scale`).
    """
    sizes, dtype_bytes = inputs.device.sizes, DTYPE_BYTES[inputs.vae_dtype]
    if room_gb is None:  # of all the host's memory, not what is free now: tiles change the
        room_gb = HOST_VAE_SHARE * inputs.device.host_memory_gb  # numbers and the resume key
    model_hw = inputs.geometry.model_hw
    padded_hw = (ceil_to(model_hw[0], SPATIAL), ceil_to(model_hw[1], SPATIAL))
    fixed = fixed_bytes(grid_frames(inputs.frames), padded_hw, dtype_bytes=dtype_bytes) / GB
    own_fixed = fixed - (OFFICIAL_VAE_PARAMS - sizes.vae_params) * dtype_bytes / GB
    if config.vae_mode == "blend" and not config.vae_tile_latent and room_gb <= own_fixed:
        raise DoesNotFit(
            f"one window's decoded frames ({own_fixed:.1f} GB at {model_hw[1]}x{model_hw[0]}, "
            f"float32) do not fit the {room_gb:.1f} GB the VAE may use; lower --size"
        )
    return plan_vae(
        model_hw,
        inputs.frames,
        budget_gb=fixed + (room_gb - own_fixed) / sizes.vae_scale,
        mode=config.vae_mode,
        tile_latent=config.vae_tile_latent,
        overlap_latent=config.vae_tile_overlap_latent,
        chunk_latent=config.vae_chunk_latent,
        dtype_bytes=dtype_bytes,
        kernels=vae_kernel_plan(config, inputs.device.kind),
    )


def vae_estimate_gb(plan: VAEPlan, sizes: ModelSizes, dtype_bytes: int) -> float:
    """`plan.estimate_gb` (official widths) for the VAE of `sizes`: the largest pass's
    activations scaled by `sizes.vae_scale`, the weights counted as they are (the official VAE:
    unchanged). The accumulator does not depend on the widths.
    """
    fixed = fixed_bytes(plan.padded_frames, plan.padded_hw, dtype_bytes=dtype_bytes)
    activations = plan.estimate_gb * GB - fixed
    weights = (OFFICIAL_VAE_PARAMS - sizes.vae_params) * dtype_bytes
    return (activations * sizes.vae_scale + fixed - weights) / GB


def _t5_gb(sizes: ModelSizes, offload: str, dtype_bytes: int) -> tuple[float, float]:
    """(all T5 weights, those on the GPU) in GiB: layer streaming keeps two blocks there."""
    everything = sizes.t5_params * dtype_bytes / GB
    streamed = max(0, sizes.t5_blocks - 2) * sizes.t5_block_params * dtype_bytes / GB
    return everything, everything if offload == "none" else everything - streamed


def _plan_one(
    config: RunConfig, inputs: MemoryInputs, budget: float | None, offload: str, batched: bool
) -> MemoryPlan:
    sizes = inputs.device.sizes
    dit_b, vae_b = DTYPE_BYTES[inputs.dtype], DTYPE_BYTES[inputs.vae_dtype]
    tokens = dit_tokens(inputs.window_latent, inputs.geometry.latent_hw, sizes.dit)
    dit_all, blocks, dit_resident = _dit_weights_gb(sizes.dit, offload, dit_b)
    act, exchange = rank_activation_gb(tokens, batched, inputs)
    vae_w = sizes.vae_params * vae_b / GB
    vae_room = None if budget is None else budget - RUNTIME_GB - dit_resident
    if vae_room is not None and vae_room <= vae_w:
        raise DoesNotFit(f"the DiT's {dit_resident:.1f} GB leave no room for the VAE")
    vae = _vae_plan(config, inputs, vae_room)
    vae_gb = vae_estimate_gb(vae, sizes, vae_b)
    t5, t5_resident = _t5_gb(sizes, offload, dit_b)
    phases = {
        "T5": t5_resident + T5_WORKING_GB * sizes.t5_width / T5_XXL_WIDTH + RUNTIME_GB,
        "DiT": dit_resident + vae_w + act + exchange + RUNTIME_GB,
        "VAE": dit_resident + vae_gb + RUNTIME_GB,
    }
    parts = {"T5 weights on GPU": t5_resident, "DiT weights on GPU": dit_resident}
    parts |= {"DiT activations": act}
    if exchange:
        parts |= {"sequence exchange buffers": exchange}
    parts |= {"VAE weights": vae_w, "VAE pass + accumulator": vae_gb - vae_w}
    parts |= {"runtime": RUNTIME_GB}
    loaded = max(dit_all, _add_stage1(inputs, offload, vae_w, phases, parts))
    if inputs.captioner_gb:  # --caption auto: the captioner runs, and is released, before T5
        phases["captioner"] = captioner_phase_gb(inputs.captioner_gb)
        parts |= {"captioner": inputs.captioner_gb}
    streamed = blocks if offload == "layer" else 0.0
    return MemoryPlan(
        tokens=tokens,
        offload=offload,
        cfg_batched=batched,
        vae=vae,
        budget_gb=budget,
        phases_gb=phases,
        parts_gb=parts,
        host_gb=_host_gb(inputs, phases, streamed, loading=max(t5, loaded)),
        on_cpu=inputs.device.kind == "cpu",
    )


def _add_stage1(
    inputs: MemoryInputs, offload: str, vae_w: float, phases: dict, parts: dict
) -> float:
    """t2v: the generator's phase (it runs first, guidance batched: [uc; c]) added to `phases`
    and `parts`; returns its weights in GiB (0 without a generator).
    """
    if inputs.stage1 is None:
        return 0.0
    dit_b = DTYPE_BYTES[inputs.dtype]
    s1_cfg, s1_tokens = inputs.stage1
    s1_all, _, s1_resident = _dit_weights_gb(s1_cfg, offload, dit_b)
    s1_act = dit_activation_bytes(s1_tokens, 2, s1_cfg, autocast=dit_b == 2) / GB
    phases["stage I"] = s1_resident + vae_w + s1_act + RUNTIME_GB
    parts |= {"stage-I weights on GPU": s1_resident, "stage-I activations": s1_act}
    return s1_all


def captioner_phase_gb(captioner_gb: float) -> float:
    """GPU memory of the captioner's phase: its model and working memory, and the runtime."""
    return captioner_gb + RUNTIME_GB


def plan_captioner(captioner_gb: float, device: DeviceFacts, vram_gb: float | None) -> float:
    """The captioner's phase in GiB; DoesNotFit when it exceeds the device's budget.

    It runs alone (`vidrefine caption`, or before T5 and stage II load for `--caption auto`).
    """
    need = captioner_phase_gb(captioner_gb)
    budget = device.budget_gb(vram_gb)
    if budget is not None and need > budget:
        raise DoesNotFit(
            f"the captioner needs {need:.1f} GB of GPU memory, more than the {budget:.1f} GB "
            "budget; caption on a larger GPU (or the CPU), or write the captions file by hand"
        )
    return need


def _host_gb(
    inputs: MemoryInputs, phases: dict[str, float], streamed_gb: float, *, loading: float
) -> float:
    """Host RAM of the run.

    Running holds decoded windows at the output size (the window, the carried tail and up to
    two queued for the background writer: ~4 windows of uint8). On the CPU everything else is
    host memory too: the largest phase (less the CUDA runtime it counts) and the process. With
    a GPU it is the larger of loading (a checkpoint read whole, T5 as stored) and running (the
    windows, streamed blocks when set, and the process with its CUDA libraries).
    """
    output_hw = inputs.geometry.output_hw
    windows = 4 * inputs.frames * output_hw[0] * output_hw[1] * 3 / GB
    if inputs.device.kind == "cpu":
        return HOST_BASE_GB + max(phases.values()) - RUNTIME_GB + windows
    running = windows + streamed_gb + 1.0  # + Python, torch, av, CUDA libraries
    return max(loading + 1.0, running)
