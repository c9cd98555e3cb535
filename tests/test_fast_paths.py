"""Issue-7 fast paths on the CPU: each switch gives the same numbers as the plain path."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidrefine.config import DiTConfig
from vidrefine.errors import BadInput
from vidrefine.models.dit import VideoDiT
from vidrefine.runtime.attention import attention_kernels, kernel_name, observe_attention_kernel
from vidrefine.runtime.placement import compile_blocks
from vidrefine.runtime.prefetch import BackgroundWriter, prefetch
from vidrefine.sampling.guidance import cfg_velocity

CFG = DiTConfig(
    hidden_size=64, num_layers=3, num_heads=2, text_dim=32, text_length=8, stage2_embeddings=True
)


def _model_and_inputs(batch: int = 1):
    torch.manual_seed(0)
    model = VideoDiT(CFG).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, 16, 4, 6, generator=gen)
    ctx = torch.randn(batch, 8, 32, generator=gen)
    return model, x, ctx, torch.full((batch,), 500.0), torch.full((batch,), 676.0)


def test_kernel_observer_tells_math_from_fused_when_the_backend_is_forced() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(1, 2, 40, 16)
    fused, _ = observe_attention_kernel(lambda: F.scaled_dot_product_attention(q, q, q))
    with sdpa_kernel([SDPBackend.MATH]):
        math, _ = observe_attention_kernel(lambda: F.scaled_dot_product_attention(q, q, q))
    assert math == "math"
    assert fused != "math"  # torch's CPU flash kernel takes this shape
    assert kernel_name(["aten._scaled_dot_product_cudnn_attention.default"], False) == "cudnn"


def test_attention_choice_is_checked_and_free_on_the_cpu_when_set() -> None:
    with pytest.raises(BadInput, match="attention kernel"):
        attention_kernels(torch.device("cpu"), "fastest")
    model, x, ctx, t, ref = _model_and_inputs()
    with torch.no_grad():
        plain = model(x, t, ctx, ref_step=ref)
        with attention_kernels(torch.device("cpu"), "cudnn"):
            chosen = model(x, t, ctx, ref_step=ref)
    torch.testing.assert_close(chosen, plain, rtol=0, atol=0)


def test_batched_and_sequential_guidance_agree_when_run_on_the_dit() -> None:
    model, x, ctx, t, ref = _model_and_inputs()

    def model_fn(xx, tt, text):
        b = xx.shape[0]
        return model(xx, tt.expand(b), text, ref_step=ref.expand(b))

    uncond = torch.zeros_like(ctx)
    with torch.no_grad():
        batched = cfg_velocity(model_fn, ctx, uncond, 13.0, batched=True)(x, t, 0)
        turn = cfg_velocity(model_fn, ctx, uncond, 13.0, batched=False)(x, t, 0)
    torch.testing.assert_close(batched, turn, rtol=1e-4, atol=1e-4)


def test_compiled_blocks_match_eager_and_keep_parameter_names_when_compiled() -> None:
    model, x, ctx, t, ref = _model_and_inputs()
    names = list(model.state_dict())
    with torch.no_grad():
        eager = model(x, t, ctx, ref_step=ref)
        compile_blocks(model.blocks, backend="aot_eager")  # the graph capture, without codegen time
        compiled = model(x, t, ctx, ref_step=ref)
    assert list(model.state_dict()) == names
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_blocks_match_eager_when_compiled_on_the_cpu() -> None:
    # About 20 s on 2 cores: inductor generates and builds C++ for the block.
    model, x, ctx, t, ref = _model_and_inputs()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager = model(x, t, ctx, ref_step=ref)
        compile_blocks(model.blocks)
        compiled = model(x, t, ctx, ref_step=ref)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    # the RoPE prologue is written so inductor can fuse it: no complex fallback
    assert not [w for w in caught if "complex" in str(w.message)]


def test_prefetch_keeps_order_and_runs_ahead_when_items_are_slow() -> None:
    produced: list[int] = []

    def slow():
        for i in range(5):
            time.sleep(0.01)
            produced.append(i)
            yield i

    items = prefetch(slow(), depth=2)
    assert next(items) == 0
    time.sleep(0.1)
    assert len(produced) >= 3  # the thread went ahead while we were busy
    assert list(items) == [1, 2, 3, 4]


def test_prefetch_raises_the_producers_error_and_stops_when_closed() -> None:
    def broken():
        yield 1
        raise ValueError("bad frame")

    items = prefetch(broken())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(items)
    endless = prefetch(iter(range(10**9)), depth=1)
    next(endless)
    endless.close()
    assert not any(t.name == "vidrefine-prefetch" for t in threading.enumerate() if t.is_alive())


class _ListWriter:
    def __init__(self, fail_at: int | None = None) -> None:
        self.written: list[int] = []
        self.exit_args = None
        self.fail_at = fail_at

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.exit_args = args
        return None

    def write(self, frames, pts) -> None:
        if len(self.written) == self.fail_at:
            raise OSError("disk full")
        self.written.append(int(pts[0]))


def test_background_writer_writes_in_order_and_reports_failures_when_used() -> None:
    target = _ListWriter()
    with BackgroundWriter(target) as writer:
        for i in range(6):
            writer.write(np.zeros((1, 2, 2, 3), np.uint8), np.array([i]))
    assert target.written == list(range(6)) and target.exit_args[0] is None
    failing = _ListWriter(fail_at=2)
    with pytest.raises(OSError, match="disk full"), BackgroundWriter(failing) as writer:
        for i in range(6):
            writer.write(np.zeros((1, 2, 2, 3), np.uint8), np.array([i]))
    assert failing.exit_args[0] is OSError  # the real writer aborts its temp file


def _refine(clip, out, background_io: bool, tmp_path, monkeypatch):
    from vidrefine.config import RunConfig, VAEConfig
    from vidrefine.io.probe import probe
    from vidrefine.models.vae import CausalVideoVAE
    from vidrefine.pipeline.loading import StageTwoModels
    from vidrefine.pipeline.refine import ClipRefiner, RefineJob
    from vidrefine.plan.clip import SourceFacts, plan_clip
    from vidrefine.plan.hardware import CPU

    monkeypatch.setenv("VIDREFINE_CACHE", str(tmp_path / "jobs"))
    torch.manual_seed(0)
    dit = VideoDiT(
        DiTConfig(hidden_size=64, num_layers=2, num_heads=2, text_dim=32, stage2_embeddings=True)
    ).eval()
    vae = CausalVideoVAE(VAEConfig(block_out_channels=(32, 32, 32, 32))).eval()
    models = StageTwoModels(vae, dit, torch.device("cpu"), torch.float32, torch.float32)
    config = RunConfig(
        size="96x64", steps=2, window_latent=3, window_overlap_latent=1, crf=0,
        background_io=background_io, vae_mode="whole",
    )  # fmt: skip
    context = torch.randn(1, 226, 32, generator=torch.Generator().manual_seed(5))
    info = probe(clip)
    plan = plan_clip(SourceFacts.of_media(info), config, CPU)
    refiner = ClipRefiner(models, config, lambda _c: context)
    refiner.refine_file(RefineJob(clip, out, "x"), plan, info, resume=False)


def test_background_io_writes_the_same_frames_when_switched_off(tmp_path, monkeypatch) -> None:
    from tests.media import make_clip
    from vidrefine.io.reader import read_chunks

    clip = make_clip(tmp_path / "in.mp4", frames=15, size_hw=(32, 48)).path
    _refine(clip, tmp_path / "threaded.mp4", True, tmp_path, monkeypatch)
    _refine(clip, tmp_path / "plain.mp4", False, tmp_path, monkeypatch)
    threaded = [c.frames.copy() for c in read_chunks(tmp_path / "threaded.mp4", 16)]
    plain = [c.frames.copy() for c in read_chunks(tmp_path / "plain.mp4", 16)]
    assert sum(len(c) for c in plain) == 15
    np.testing.assert_array_equal(np.concatenate(threaded), np.concatenate(plain))


def test_external_attention_kernels_are_refused_clearly_when_missing_or_on_the_cpu() -> None:
    from vidrefine.config import RunConfig
    from vidrefine.runtime.attention import external_kernel

    assert RunConfig(attention="int8").attention == "int8"  # a known choice, checked at use
    with pytest.raises(BadInput, match="needs a CUDA device"):
        attention_kernels(torch.device("cpu"), "flash_attn")
    for choice, package in (("flash_attn", "flash-attn"), ("int8", "SageAttention 2")):
        try:
            external_kernel(choice, torch.device("cuda"))
        except BadInput as exc:  # this machine has neither package
            assert package in str(exc) and "attention = 'cudnn'" in str(exc)
        else:
            pytest.skip(f"{package} is installed here")


def test_routed_attention_runs_the_given_kernel_for_every_layer_when_active() -> None:
    from vidrefine.runtime.attention import route_attention

    model, x, ctx, t, ref = _model_and_inputs()

    def by_hand(q, k, v):  # softmax(q k^T / sqrt(d)) v, written out
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        return weights @ v

    with torch.no_grad():
        plain = model(x, t, ctx, ref_step=ref)
        with route_attention(by_hand, accept=lambda args, kwargs: len(args) == 3) as routed:
            out = model(x, t, ctx, ref_step=ref)
    assert routed.routed == CFG.num_layers
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)
