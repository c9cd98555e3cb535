"""Issue 21's VAE rewrites compute what the previous operators computed (CPU, same process).

The previous forwards live in benchmarks/legacy_vae.py. Stated differences (fp32, tiny random
weights; relative = max |new - old| / max |old|): the default path, SpatialNorm3D at latent
resolution, the copy-free up/down-sampling and the causal padding buffer are bit-identical;
conv2d_sum, capped calls and NDHWC stay under 1e-5 relative (fp32 rounding order).
"""

from __future__ import annotations

import pytest
import torch
from vae_fixtures import random_official_vae

from benchmarks.legacy_vae import legacy_vae
from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.models.vae_blocks import (
    CausalConv3d,
    CausalStep,
    DownSample3D,
    GroupNorm,
    SpatialNorm3D,
    Upsample3D,
    modulate_,
    norm_silu,
    resize_latent,
)
from vidrefine.models.vae_conv import MEASURED, PLAIN, VAEKernels, causal_conv
from vidrefine.runtime.kernel_choice import FastestChoice

NDHWC = torch.channels_last_3d
WIDTHS = (32, 32, 32, 64)  # every code path of the official widths (a shortcut each way)


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    model = CausalVideoVAE(VAEConfig(block_out_channels=WIDTHS)).eval()
    model.load_state_dict(random_official_vae(seed=1, widths=WIDTHS))
    return model


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


Z = _rand(1, 16, 5, 2, 3, seed=1)  # two chunks [0:3], [3:5] -> 17 frames at 16 x 24
X = _rand(1, 3, 9, 16, 16, seed=2)  # two chunks of 5 and 4 frames -> 3 latents at 2 x 2


@torch.no_grad()
def _decode(vae, kernels=PLAIN, z=Z) -> torch.Tensor:
    head, cache = vae.decode(z[:, :, :3], None, kernels)
    tail, _ = vae.decode(z[:, :, 3:], cache, kernels)
    return torch.cat([head, tail], dim=2)


@torch.no_grad()
def _encode(vae, kernels=PLAIN, x=X) -> torch.Tensor:
    head, cache = vae.encode(x[:, :, :5], None, kernels)
    tail, _ = vae.encode(x[:, :, 5:], cache, kernels)
    return torch.cat([head, tail], dim=2)


@pytest.fixture(scope="module")
def legacy(vae) -> tuple[torch.Tensor, torch.Tensor]:
    with legacy_vae(vae):
        return _decode(vae), _encode(vae)


def _relative(new: torch.Tensor, old: torch.Tensor) -> float:
    return ((new.float() - old.float()).abs().max() / old.float().abs().max()).item()


def test_default_kernels_reproduce_the_previous_operators_bit_for_bit_when_chunked(
    vae, legacy
) -> None:
    decoded, encoded = legacy
    assert torch.equal(_decode(vae), decoded)
    assert torch.equal(_encode(vae), encoded)


def test_half_precision_decode_is_unchanged_bit_for_bit_on_the_cpu_when_bf16(vae) -> None:
    model = CausalVideoVAE(vae.config).eval().to(torch.bfloat16)
    model.load_state_dict(vae.state_dict())
    z = Z[:, :, :2, :, :2].to(torch.bfloat16)  # one small chunk: bf16 convs are slow here
    with torch.no_grad():
        new, _ = model.decode(z)
        with legacy_vae(model):
            old, _ = model.decode(z)
    assert torch.equal(new, old)


@pytest.mark.parametrize(
    "kernels",
    [VAEKernels(conv="conv2d_sum"), VAEKernels(max_elements=3000)],
    ids=["conv2d_sum", "capped"],
)
def test_other_conv_methods_agree_with_conv3d_within_fp32_rounding_when_chunked(
    vae, legacy, kernels
) -> None:
    decoded, encoded = legacy
    assert _relative(_decode(vae, kernels), decoded) < 1e-5
    assert _relative(_encode(vae, kernels), encoded) < 1e-5


def test_ndhwc_decode_stays_channels_last_and_agrees_when_summing_conv2d(vae, legacy) -> None:
    seen: list[bool] = []
    hooks = [
        m.register_forward_pre_hook(
            lambda _m, a: seen.append(a[0].is_contiguous(memory_format=NDHWC))
        )
        for m in vae.decoder.modules()
        if isinstance(m, CausalConv3d) and m.time_pad
    ]
    try:
        out = _decode(vae, VAEKernels(conv="conv2d_sum"), Z.contiguous(memory_format=NDHWC))
    finally:
        for hook in hooks:
            hook.remove()
    assert seen and all(seen)  # every 3x3x3 conv read NDHWC: nothing fell back to NCDHW
    assert out.is_contiguous(memory_format=NDHWC)
    assert _relative(out, legacy[0]) < 1e-5


@pytest.mark.parametrize("method", ["conv3d", "conv2d_sum"])
@pytest.mark.parametrize("cap", [0, 200], ids=["whole", "capped"])
def test_causal_conv_equals_one_conv3d_over_the_padded_frames_when_split(method, cap) -> None:
    torch.manual_seed(3)
    conv = torch.nn.Conv3d(4, 5, 3, padding=(0, 1, 1))
    head, x = _rand(1, 4, 2, 3, 5, seed=4), _rand(1, 4, 6, 3, 5, seed=5)
    with torch.no_grad():
        expected = conv(torch.cat([head, x], dim=2))
        got = causal_conv(conv, x, head, method, cap)
    tolerance = 0 if method == "conv3d" else 1e-5 * expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)


def test_spatial_modulation_at_latent_resolution_equals_upsampled_when_first_or_later() -> None:
    y, b = _rand(1, 8, 3, 2, 3, seed=6), _rand(1, 8, 3, 2, 3, seed=7)
    for first, frames in ((True, 9), (False, 12), (True, 1)):
        f = _rand(1, 8, frames, 8, 12, seed=8)
        yy, bb = (y[:, :, :1], b[:, :, :1]) if frames == 1 else (y, b)
        expected = f * resize_latent(yy, f.shape[-3:], split_first=first)
        expected = expected + resize_latent(bb, f.shape[-3:], split_first=first)
        assert torch.equal(modulate_(f.clone(), yy, bb, split_first=first), expected)
    odd = _rand(1, 8, 4, 7, 12, seed=9)  # 7 rows from 2: not a whole factor, upsampled in memory
    expected = odd * resize_latent(y, odd.shape[-3:], split_first=False)
    expected = expected + resize_latent(b, odd.shape[-3:], split_first=False)
    assert torch.equal(modulate_(odd.clone(), y, b, split_first=False), expected)


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("layout", [torch.contiguous_format, NDHWC], ids=["ncdhw", "ndhwc"])
def test_up_and_down_sampling_write_the_conv_input_once_with_equal_output(first, layout) -> None:
    """Bit-identical in NCDHW. In NDHWC the old time pooling fell back to NCDHW (torch.cat), so
    its 2D conv ran another kernel: fp32 rounding apart there."""
    from benchmarks.legacy_vae import LegacyDownSample3D, LegacyUpsample3D

    torch.manual_seed(10)
    x = _rand(1, 32, 5 if first else 4, 6, 8, seed=11).contiguous(memory_format=layout)
    step = CausalStep(previous={}, first=first)
    pairs = ((Upsample3D(32, True), LegacyUpsample3D), (DownSample3D(32, True), LegacyDownSample3D))
    for new, old in pairs:
        with torch.no_grad():
            got = new(x, step)
            new.__class__ = old
            expected = new(x, step)
        if layout == NDHWC:
            assert got.is_contiguous(memory_format=NDHWC)
            assert _relative(got, expected) < 1e-5
        else:
            assert torch.equal(got, expected)


def test_fused_norm_expressions_agree_with_separate_operators_when_run_eagerly(vae, legacy) -> None:
    fused = VAEKernels(fuse=lambda fn: fn)  # the fused expressions themselves, uncompiled
    assert _relative(_decode(vae, fused), legacy[0]) < 1e-6
    assert _relative(_encode(vae, fused), legacy[1]) < 1e-6


def _norm_inputs():
    torch.manual_seed(12)
    spatial = SpatialNorm3D(32, 16, 32, 1e-6).eval()
    group = GroupNorm(32, 32, eps=1e-6)
    with torch.no_grad():
        for norm in (spatial.norm_layer, group):
            norm.weight.normal_()
            norm.bias.normal_()
    return spatial, group, _rand(1, 32, 5, 4, 6, seed=13), _rand(1, 16, 2, 2, 3, seed=14)


@pytest.mark.parametrize("first", [True, False])
def test_compiled_norms_match_eager_when_torch_compile_captures_them(first) -> None:
    # aot_eager: dynamo's capture and the functionalised graph, without inductor's codegen time
    spatial, group, f, zq = _norm_inputs()
    zq = zq if first else zq[:, :, 1:]
    f = f if first else f[:, :, 1:]
    compiled = CausalStep(
        {}, first, kernels=VAEKernels(fuse=lambda fn: torch.compile(fn, backend="aot_eager"))
    )
    eager = CausalStep({}, first)
    with torch.no_grad():
        for norm, z in ((spatial, zq), (group, None)):
            expected = norm_silu(norm, f, z, eager)
            torch.testing.assert_close(
                norm_silu(norm, f, z, compiled), expected, rtol=1e-5, atol=1e-6
            )


def test_measured_choice_picks_a_method_once_per_layer_shape_when_asked() -> None:
    torch.manual_seed(15)
    conv = CausalConv3d(8, 8, 3)
    choice = FastestChoice(repeats=1)
    measured = VAEKernels(conv=MEASURED, measure=choice)
    x = _rand(1, 8, 6, 5, 7, seed=16)
    with torch.no_grad():
        got = conv(x, CausalStep({}, True, kernels=measured))
        (picked,) = choice.picks.values()
        expected = conv(x, CausalStep({}, True, kernels=VAEKernels(conv=picked)))
        assert torch.equal(got, expected)
        assert set(next(iter(choice.timings.values()))) == {"conv3d", "conv2d_sum"}
        conv(x[:, :, :4], CausalStep({}, True, kernels=measured))  # shorter: same layer shape
        assert len(choice.picks) == 1
        conv(x[..., :3], CausalStep({}, True, kernels=measured))  # another width: measured anew
        assert len(choice.picks) == 2


@pytest.mark.slow
def test_compile_setting_decodes_through_inductor_on_the_cpu_when_planned() -> None:
    # Tens of seconds on 2 cores: inductor generates and builds C++ for the fused norms.
    from vidrefine.pipeline.vae_pass import decode_latents
    from vidrefine.plan.vae import VAEKernelPlan, plan_vae

    torch.manual_seed(0)
    model = CausalVideoVAE(VAEConfig(block_out_channels=(32, 32, 32, 32))).eval()
    z = _rand(1, 16, 2, 2, 3, seed=17)
    plain = decode_latents(model, z, plan_vae((16, 24), 5, mode="whole"))
    planned = plan_vae((16, 24), 5, mode="whole", kernels=VAEKernelPlan(compile=True))
    compiled_out = decode_latents(model, z, planned)
    assert _relative(compiled_out, plain) < 1e-5
