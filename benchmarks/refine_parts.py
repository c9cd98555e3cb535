"""Pieces of benchmarks/refine_gpu.py: random full-size models, a phase clock, FLOP counting.

Timing does not depend on weight values, so every model is built on the meta device, given
storage on the target device and filled with small random numbers (no fp32 copy, no download).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from vidrefine.config import DiTConfig, VAEConfig
from vidrefine.models.dit import VideoDiT
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.models.vae_conv import PLAIN
from vidrefine.pipeline.vae_pass import decode_latents, encode_video  # noqa: E402
from vidrefine.plan.vae import VAEPlan
from vidrefine.runtime.attention import attention_kernels, observe_attention_kernel
from vidrefine.runtime.live_memory import LiveTensorMemory

# google/t5-v1_1-xxl's encoder shape (4.76 B parameters); built locally, never downloaded.
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)
T5_TINY = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
TEXT_TOKENS = 226


def _fill(model: nn.Module, seed: int) -> nn.Module:
    """Random weights: N(0, 0.02) matrices, unit 1-D weights (norms), zero biases.

    Drawn where the model lives (a CUDA generator on the GPU: seconds instead of a minute for
    the 6.5 B parameters of the full-size models; the values differ from CPU draws, which
    changes no timing).
    """
    generators: dict[torch.device, torch.Generator] = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim == 1:
                param.fill_(1.0)
            else:
                device = param.device
                if device not in generators:
                    generators[device] = torch.Generator(device=device).manual_seed(seed)
                values = torch.randn(param.shape, generator=generators[device], device=device)
                param.copy_(values.mul_(0.02).to(param.dtype))
    return model


def random_model(build, device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """`build()` on meta, then real storage on `device` in `dtype`, then random weights."""
    with torch.device("meta"):
        model = build()
    model = model.to_empty(device=device).to(dtype)
    return _fill(model, seed).eval()


def t5_encoder(shape: dict, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A T5 v1.1 encoder (gated GELU) of `shape` with random weights."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(**shape, feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    return random_model(lambda: T5EncoderModel(config), device, dtype)


class Clock:
    """Per-phase device seconds and peak memory.

    On CUDA each phase is bracketed by CUDA events (read after one synchronize at the end) and
    its peak is `max_memory_allocated` since the phase began (weights included). On the CPU,
    time is `perf_counter` and the peak comes from `memory` (working set, weights excluded).
    """

    def __init__(self, device: torch.device, memory: LiveTensorMemory | None = None) -> None:
        """Start empty; `memory` is an active LiveTensorMemory on the CPU, else None."""
        self.device, self.memory = device, memory
        self._events: list[tuple[str, object, object]] = []
        self._seconds: dict[str, float] = defaultdict(float)
        self.peaks: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as (part of) phase `name`."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            start = torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            if self.memory is not None:
                self.memory.reset_peak()
            began = time.perf_counter()
        yield
        self.calls[name] += 1
        if cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((name, start, end))
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._seconds[name] += time.perf_counter() - began
            peak = self.memory.peak if self.memory is not None else 0
        self.peaks[name] = max(self.peaks[name], peak)

    def seconds(self) -> dict[str, float]:
        """Seconds per phase (synchronizes the device once)."""
        if self._events:
            torch.cuda.synchronize(self.device)
            for name, start, end in self._events:
                self._seconds[name] += start.elapsed_time(end) / 1000.0
            self._events.clear()
        return dict(self._seconds)


class TimedDiT(nn.Module):
    """Calls the DiT inside clock phases "DiT pass 1", "DiT pass 2", ..."""

    def __init__(self, dit: nn.Module, clock: Clock) -> None:
        """Wrap `dit`; `calls` counts the passes."""
        super().__init__()
        self.inner, self.clock, self.passes = dit, clock, 0

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """Run one pass of the wrapped DiT."""
        self.passes += 1
        with self.clock.phase(f"DiT pass {self.passes}"):
            return self.inner(*args, **kwargs)


class TimedVAE:
    """Duck-typed VAE whose encode/decode calls add to the "VAE encode"/"VAE decode" phases."""

    def __init__(self, vae: CausalVideoVAE, clock: Clock) -> None:
        """Wrap `vae`."""
        self.inner, self.clock, self.config = vae, clock, vae.config

    def encode(self, x, cache, kernels=PLAIN):
        """One encoder chunk (see CausalVideoVAE.encode)."""
        with self.clock.phase("VAE encode"):
            return self.inner.encode(x, cache, kernels)

    def decode(self, z, cache, kernels=PLAIN):
        """One decoder chunk (see CausalVideoVAE.decode)."""
        with self.clock.phase("VAE decode"):
            return self.inner.decode(z, cache, kernels)


def _counted(run) -> tuple[int, bool]:
    """FLOPs of `run()` and whether an SDPA operator was among the counted ones."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    ops = {str(op) for op in counter.get_flop_counts().get("Global", {})}
    return counter.get_total_flops(), any("scaled_dot_product" in op for op in ops)


def attention_flops(cfg: DiTConfig, batch: int, tokens: int) -> int:
    """QK^T and PV over all layers: 2 matmuls x 2 FLOPs per MAC x B x heads x S^2 x d."""
    return 4 * batch * cfg.num_heads * tokens * tokens * cfg.head_dim * cfg.num_layers


def count_dit_flops(cfg: DiTConfig, latent_shape: tuple[int, ...]) -> tuple[int, str]:
    """FLOPs of one DiT pass over latents (B, T, C, h, w), on fake tensors (no compute).

    torch's counter has formulas for the CUDA SDPA kernels but not for the CPU one the fake
    tensors dispatch to; attention is then added analytically and the note says so.
    """
    b, t, _, h, w = latent_shape
    tokens = t * (h // cfg.patch_size) * (w // cfg.patch_size) + cfg.text_length
    with FakeTensorMode():
        dit = VideoDiT(cfg)
        x = torch.empty(latent_shape)
        ctx = torch.empty(b, cfg.text_length, cfg.text_dim)
        ones = torch.ones(b)
        flops, saw = _counted(lambda: dit(x, ones, ctx, ref_step=ones))
    if saw:
        return flops, "counted"
    return flops + attention_flops(cfg, b, tokens), "attention added analytically"


def count_vae_flops(cfg: VAEConfig, plan: VAEPlan) -> tuple[int, int]:
    """(encode, decode) FLOPs of one window under `plan`, on fake tensors."""
    with FakeTensorMode():
        vae = CausalVideoVAE(cfg)
        video = torch.empty(1, cfg.in_channels, plan.frames, *plan.size_hw)
        encode, _ = _counted(lambda: encode_video(vae, video, plan, sample=False))
        z = torch.empty(1, cfg.latent_channels, plan.latent_frames, *plan.latent_hw)
        decode, _ = _counted(lambda: decode_latents(vae, z, plan))
    return encode, decode


def count_t5_flops(shape: dict) -> int:
    """FLOPs of encoding one 226-token caption with a T5 encoder of `shape`."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(**shape, feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    with FakeTensorMode():
        model = T5EncoderModel(config)
        ids = torch.zeros(1, TEXT_TOKENS, dtype=torch.long)
        flops, _ = _counted(lambda: model(input_ids=ids))
    return flops


def matmul_rate(device: torch.device) -> tuple[float, str]:
    """Measured dense matmul FLOP/s: bf16 8192^3 on CUDA, fp32 512^3 on the CPU."""
    cuda = device.type == "cuda"
    n, dtype = (8192, torch.bfloat16) if cuda else (512, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    repeats = 20 if cuda else 5
    if cuda:
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - began) / repeats
    return 2 * n**3 / seconds, f"{'bf16' if cuda else 'fp32'} {n}^3 matmul"


def probe_attention(shape, dtype: torch.dtype, device: torch.device, choice: str) -> str:
    """The SDPA kernel that runs for q, k, v of `shape` (B, heads, S, d) under `choice`."""
    q = torch.randn(shape, device=device, dtype=dtype)
    with attention_kernels(device, choice), torch.no_grad():
        kernel, _ = observe_attention_kernel(
            lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)
        )
    return kernel


def time_shot_detection(clip, notes: list[str]) -> float:
    """Seconds `upscale` spends finding the hard cuts of `clip` (one decode and the detector).

    Appends a note with the cost a frame, the frame size and the cuts found.
    """
    from vidrefine.config import RunConfig
    from vidrefine.io.probe import probe
    from vidrefine.io.shots import detect_cuts
    from vidrefine.plan.shots import MIN_SHOT_FRAMES

    info = probe(clip)
    began = time.perf_counter()
    threshold = RunConfig().cut_threshold
    cuts = detect_cuts(clip, info, threshold=threshold, min_shot_frames=MIN_SHOT_FRAMES)
    seconds = time.perf_counter() - began
    h, w = info.display_hw
    per_frame_ms = 1000 * seconds / max(1, info.frame_count)
    notes.append(
        f"shot detection: {per_frame_ms:.2f} ms a frame of {w}x{h} (decode included; "
        f"{info.frame_count} frames, {len(cuts)} cuts)"
    )
    return seconds
