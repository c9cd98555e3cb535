"""benchmarks/vae.py's channels-last layout variant computes the same decode (issue 7)."""

from __future__ import annotations

import copy

import torch

from benchmarks.vae import channels_last
from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE


def test_channels_last_decode_matches_contiguous_when_weights_and_input_are_ndhwc() -> None:
    torch.manual_seed(0)
    config = VAEConfig(block_out_channels=(8, 8, 8, 8), norm_groups=4, layers_per_block=1)
    vae = CausalVideoVAE(config).eval()
    z = torch.randn(1, 16, 2, 2, 3, generator=torch.Generator().manual_seed(1))
    ndhwc = channels_last(copy.deepcopy(vae))
    convs = [m for m in ndhwc.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(
        m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs
    )
    seen: list[bool] = []  # conv inputs in NDHWC (what the CPU kernel returns is its choice)
    ndhwc.decoder.conv_in.register_forward_pre_hook(
        lambda _m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last_3d))
    )
    with torch.no_grad():
        reference, _ = vae.decode(z, {})
        out, _ = ndhwc.decode(z.contiguous(memory_format=torch.channels_last_3d), {})
    assert seen and all(seen)  # the convolution was fed NDHWC
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
