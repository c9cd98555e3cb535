"""runtime.kernel_choice: a choice is measured once per key, failing candidates are dropped,
and the plan's VAE kernel choices resolve per device (issue 21)."""

from __future__ import annotations

import pytest
import torch

from vidrefine.config import RunConfig
from vidrefine.errors import BadInput
from vidrefine.models.vae_conv import MEASURED
from vidrefine.pipeline.vae_pass import vae_kernels
from vidrefine.plan.vae import VAEKernelPlan, vae_kernel_plan
from vidrefine.runtime.kernel_choice import FastestChoice


def test_each_key_is_measured_once_and_failing_candidates_are_dropped_when_choosing() -> None:
    calls = {"works": 0, "breaks": 0}

    def works():
        calls["works"] += 1
        return torch.ones(3)

    def breaks():
        calls["breaks"] += 1
        raise RuntimeError("CUDA out of memory (a stand-in)")

    choice = FastestChoice(repeats=2)
    assert choice(("layer", 1), {"breaks": breaks, "works": works}) == "works"
    assert calls == {"works": 3, "breaks": 1}  # one warm-up and two timed runs
    assert choice(("layer", 1), {"breaks": breaks, "works": works}) == "works"
    assert calls == {"works": 3, "breaks": 1}  # remembered: nothing ran
    with pytest.raises(RuntimeError, match="out of memory"):
        choice(("layer", 2), {"breaks": breaks})


def test_auto_kernels_keep_the_cpu_path_and_measure_on_cuda_when_resolved() -> None:
    auto = vae_kernel_plan(RunConfig())
    cpu = vae_kernels(auto, torch.device("cpu"))
    assert (cpu.conv, cpu.max_elements, cpu.fuse) == ("conv3d", 0, None)
    cuda = vae_kernels(auto, torch.device("cuda"))  # resolving touches no GPU
    assert cuda.conv == MEASURED and cuda.measure is not None and cuda.max_elements == 2**31
    forced = vae_kernels(
        VAEKernelPlan(conv="conv2d_sum", cap_mi=1, compile=True), torch.device("cpu")
    )
    assert (forced.conv, forced.max_elements) == ("conv2d_sum", 2**20) and forced.fuse is not None


def test_unknown_vae_kernel_settings_are_refused_when_configured() -> None:
    with pytest.raises(BadInput, match="vae_conv"):
        RunConfig(vae_conv="winograd")
    with pytest.raises(BadInput, match="vae_layout"):
        RunConfig(vae_layout="nhwc")
    with pytest.raises(BadInput, match="layout"):
        VAEKernelPlan(layout="nhwc")
