"""The VAE's working set (issues 7 and 21): half precision keeps no full-size fp32 copies, and
the planner's per-pass estimate (`plan.vae_memory`, CPU factor) is within 15% of the measured
live-tensor peak for every conv path.

Small shapes: bf16 convolutions have no fast kernel on this kind of CPU, and the peaks are
exactly linear in pixels and frames (the coefficients were measured at 64x96, F = 5, 9, 17).
"""

from __future__ import annotations

import pytest
import torch

from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.models.vae_blocks import GroupNorm
from vidrefine.models.vae_conv import VAEKernels
from vidrefine.plan.vae_memory import decode_peak_bytes, encode_peak_bytes
from vidrefine.runtime.live_memory import LiveTensorMemory

CONFIG = VAEConfig(block_out_channels=(32, 64, 64, 128))  # the official ratios at 1/4 width
SCALE = CONFIG.block_out_channels[0] / 128
SIZE_HW = (32, 48)


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(CONFIG).eval()


_MEASURED: dict = {}


def _peaks(vae, dtype, frames: int, case: str = "conv3d") -> tuple[int, int]:
    """Live-tensor peaks of one decode and one encode pass (measured once per arguments)."""
    key = (dtype, frames, case)
    if key not in _MEASURED:
        _MEASURED[key] = _measure(vae, dtype, frames, CASES[case][0])
    return _MEASURED[key]


def _measure(vae, dtype, frames: int, kernels: VAEKernels) -> tuple[int, int]:
    model = vae.to(dtype)
    gen = torch.Generator().manual_seed(1)
    latents = 1 + (frames - 1) // 4
    z = torch.randn(1, 16, latents, SIZE_HW[0] // 8, SIZE_HW[1] // 8, generator=gen).to(dtype)
    x = torch.randn(1, 3, frames, *SIZE_HW, generator=gen).to(dtype)
    try:
        with torch.no_grad():
            with LiveTensorMemory() as decoding:
                model.decode(z, None, kernels)
            with LiveTensorMemory() as encoding:
                model.encode(x, None, kernels)
    finally:
        vae.float()
    return decoding.peak, encoding.peak


def test_half_precision_halves_the_working_set_when_decoding_and_encoding(vae) -> None:
    fp32, bf16 = _peaks(vae, torch.float32, 5), _peaks(vae, torch.bfloat16, 5)
    # everything alive at the peak is in the model dtype (GroupNorm's fp32 work is sliced)
    assert bf16[0] <= 0.55 * fp32[0]
    assert bf16[1] <= 0.55 * fp32[1]


CASES = {  # name: (kernels, vae_memory path, cap_elements)
    "conv3d": (VAEKernels(), "conv3d", 0),
    "conv2d_sum": (VAEKernels(conv="conv2d_sum"), "conv2d_sum", 0),
    "capped": (VAEKernels(max_elements=1), "conv3d", 1),  # one-frame calls
    "conv2d_sum capped": (VAEKernels(conv="conv2d_sum", max_elements=1), "conv2d_sum", 1),
}


@pytest.mark.parametrize(
    ("case", "frames"),
    [("conv3d", 5), ("conv3d", 9), ("conv2d_sum", 5), ("capped", 5), ("conv2d_sum capped", 5)],
)
def test_estimates_are_within_15_percent_of_the_live_peak_when_one_pass_runs(
    vae, case, frames
) -> None:
    _, path, cap = CASES[case]
    decoded, encoded = _peaks(vae, torch.float32, frames, case)
    cost = {"dtype_bytes": 4, "path": path, "cap_elements": cap, "device": "cpu"}
    assert SCALE * decode_peak_bytes(frames, SIZE_HW, **cost) == pytest.approx(decoded, rel=0.15)
    assert SCALE * encode_peak_bytes(frames, SIZE_HW, **cost) == pytest.approx(encoded, rel=0.15)
    measured = {**cost, "path": "measured"}  # either method: bounds both
    assert SCALE * decode_peak_bytes(frames, SIZE_HW, **measured) >= decoded


def test_bf16_estimate_is_within_15_percent_of_the_live_peak_when_one_pass_runs(vae) -> None:
    decoded, encoded = _peaks(vae, torch.bfloat16, 5)
    cost = {"dtype_bytes": 2, "device": "cpu"}
    assert SCALE * decode_peak_bytes(5, SIZE_HW, **cost) == pytest.approx(decoded, rel=0.15)
    assert SCALE * encode_peak_bytes(5, SIZE_HW, **cost) == pytest.approx(encoded, rel=0.15)


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
