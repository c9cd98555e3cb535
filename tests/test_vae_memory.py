"""The VAE's working set (issue 7): half precision keeps no full-size fp32 copies, and the
planner's per-pass estimate bounds the measured live-tensor peak."""

from __future__ import annotations

import pytest
import torch

from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.models.vae_blocks import GroupNorm
from vidrefine.plan.vae_memory import decode_peak_bytes, encode_peak_bytes
from vidrefine.runtime.live_memory import LiveTensorMemory

CONFIG = VAEConfig(block_out_channels=(32, 64, 64, 128))  # the official ratios at 1/4 width
SCALE = CONFIG.block_out_channels[0] / 128


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(CONFIG).eval()


def _peaks(vae: CausalVideoVAE, dtype: torch.dtype) -> tuple[int, int]:
    model = vae.to(dtype)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(1, 16, 3, 12, 16, generator=gen).to(dtype)  # -> 9 frames at 96 x 128
    x = torch.randn(1, 3, 9, 96, 128, generator=gen).to(dtype)
    with torch.no_grad():
        with LiveTensorMemory() as decoding:
            model.decode(z, None)
        with LiveTensorMemory() as encoding:
            model.encode(x, None)
    vae.float()
    return decoding.peak, encoding.peak


def test_half_precision_halves_the_working_set_when_decoding_and_encoding(vae) -> None:
    fp32, bf16 = _peaks(vae, torch.float32), _peaks(vae, torch.bfloat16)
    # everything alive at the peak is in the model dtype (GroupNorm's fp32 work is sliced)
    assert bf16[0] <= 0.6 * fp32[0]
    assert bf16[1] <= 0.6 * fp32[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_estimates_bound_the_measured_peaks_when_one_pass_runs(vae, dtype) -> None:
    decoded, encoded = _peaks(vae, dtype)
    b = dtype.itemsize
    decode_estimate = SCALE * decode_peak_bytes(9, (96, 128), dtype_bytes=b)
    encode_estimate = SCALE * encode_peak_bytes(9, (96, 128), dtype_bytes=b)
    assert decoded <= decode_estimate <= 2.5 * decoded
    assert encoded <= encode_estimate <= 2.5 * encoded


def test_sliced_group_norm_gives_the_one_shot_fp32_result_when_input_is_half() -> None:
    norm = GroupNorm(32, 128, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(128))
        norm.bias.copy_(torch.randn(128))
    x = torch.randn(1, 128, 3, 8, 8).to(torch.bfloat16)
    one_shot = torch.nn.functional.group_norm(x.float(), 32, norm.weight, norm.bias, 1e-6).to(
        torch.bfloat16
    )
    assert torch.equal(norm(x), one_shot)
