"""Issue 21's VAE kernels on CUDA: the one-call half-precision GroupNorm, every conv method and
the measured choice agree with the plain path within bf16 tolerance; external attention kernels
route when installed."""

from __future__ import annotations

import pytest
import torch

from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.models.vae_blocks import GroupNorm
from vidrefine.models.vae_conv import MEASURED, METHODS, VAEKernels, causal_conv
from vidrefine.runtime.kernel_choice import FastestChoice

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_one_call_group_norm_tracks_fp32_and_the_sliced_path_when_bf16_on_cuda() -> None:
    norm = GroupNorm(32, 128, eps=1e-6).to(CUDA)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(1, 128, 5, 32, 48, device=CUDA) * 3 + 10).to(torch.bfloat16)
    reference = torch.nn.functional.group_norm(x.float(), 32, norm.weight, norm.bias, 1e-6)
    half = norm.to(torch.bfloat16)
    one_call, sliced = half(x), half.sliced(x)
    assert one_call.dtype == torch.bfloat16
    assert _relative(one_call, reference) < 1e-2
    assert _relative(one_call, sliced) < 1e-2


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cap", [0, 64 * 3 * 40 * 56])
def test_conv_methods_agree_with_one_conv3d_when_bf16_on_cuda(layout, method, cap) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(64, 64, 3, padding=(0, 1, 1)).to(CUDA, torch.bfloat16)
    x = torch.randn(1, 64, 7, 40, 56, device=CUDA, dtype=torch.bfloat16)
    head = torch.randn(1, 64, 2, 40, 56, device=CUDA, dtype=torch.bfloat16)
    with torch.no_grad():
        reference = conv(torch.cat([head, x], dim=2))
        x, head = x.contiguous(memory_format=layout), head.contiguous(memory_format=layout)
        got = causal_conv(conv, x, head, method, cap)
    assert got.is_contiguous(memory_format=layout)
    assert _relative(got, reference) < 2e-2


def test_measured_decode_tracks_the_plain_decode_when_bf16_on_cuda() -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig(block_out_channels=(32, 64, 64, 128))).eval()
    vae = vae.to(CUDA, torch.bfloat16)
    z = torch.randn(1, 16, 3, 8, 12, device=CUDA, dtype=torch.bfloat16)
    choice = FastestChoice(repeats=1)
    with torch.no_grad():
        plain, _ = vae.decode(z)
        measured, _ = vae.decode(z, None, VAEKernels(conv=MEASURED, measure=choice))
    assert choice.picks and _relative(measured, plain) < 5e-2


def test_flash_attn_routes_and_matches_sdpa_when_installed() -> None:
    from vidrefine.errors import BadInput
    from vidrefine.runtime.attention import attention_kernels

    q = torch.randn(2, 4, 1000, 64, device=CUDA, dtype=torch.bfloat16)
    expected = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    try:
        route = attention_kernels(CUDA, "flash_attn")
    except BadInput as exc:
        pytest.skip(str(exc))
    with route as routed:
        got = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert routed.routed == 1 and _relative(got, expected) < 1e-2
