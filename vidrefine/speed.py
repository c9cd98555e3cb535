"""Run-time options applied to a loaded DiT: layer streaming and `torch.compile` of its blocks."""

from __future__ import annotations

import torch
from torch import nn

from vidrefine.config import RunConfig
from vidrefine.offload import BlockStreamer, stream_blocks


def compile_blocks(model: nn.Module, **options) -> nn.Module:
    """Compile each block's `forward` in place (parameter names unchanged).

    One compiled graph serves all 30 layers, which share shapes, so compile time is paid once
    per token count. Only `forward` is compiled, not the module call, so forward hooks (layer
    streaming's loaders) stay outside the graph, and the parameters are graph inputs: swapping
    their storage does not recompile. `options` go to `torch.compile` (e.g. backend="aot_eager").
    """
    for block in model.blocks:
        block.forward = torch.compile(block.forward, **options)
    return model


def prepare_dit(
    model: nn.Module, config: RunConfig, device: torch.device
) -> tuple[nn.Module, BlockStreamer | None, list[str]]:
    """Apply `config.offload == "layer"` and `config.compile` to a loaded DiT.

    With layer offload the blocks go to host memory and everything else to `device`, so the
    DiT is best loaded on the CPU (`load_stage_two` does) and never whole on the GPU.

    Returns the model, the streamer (None without layer offload) and notes for the run log.
    Compiling and streaming combine: the loaders run as hooks around the compiled forward.
    """
    notes: list[str] = []
    streamer = None
    if config.offload == "layer":
        streamer = stream_blocks(model, device)
        notes.append(
            f"DiT blocks stream from host memory ({streamer.host_bytes() / 1e9:.2f} GB there)"
        )
    if config.compile:
        compile_blocks(model)
        notes.append("DiT blocks compiled with torch.compile")
    return model, streamer, notes


def device_budget_gb(config: RunConfig, device: torch.device) -> float | None:
    """`config.vram_gb`, else the CUDA device's total memory in GiB, else None (CPU)."""
    if config.vram_gb is not None:
        return config.vram_gb
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 1024**3
    return None


def plan_run(config: RunConfig, inputs, device: torch.device, progress) -> RunConfig:
    """Log the memory plan for the largest of `inputs` and return `config` with it applied.

    Inputs that cannot be probed are left to fail on their own later (a batch goes on without
    them). Without a budget (CPU run, no --vram) the plan is logged and nothing changes.
    """
    from vidrefine.errors import VidrefineError
    from vidrefine.io.probe import probe
    from vidrefine.planner import apply_plan, plan_memory

    sizes = []
    for path in inputs:
        try:
            sizes.append(probe(path).display_hw)
        except VidrefineError:
            continue
    if not sizes:
        return config
    budget = device_budget_gb(config, device)
    plan = plan_memory(config, max(sizes, key=lambda hw: hw[0] * hw[1]), vram_gb=budget)
    progress.info(plan.line())
    return config if budget is None else apply_plan(config, plan)


def plan_t2v(config: RunConfig, plugin, device: torch.device, progress) -> RunConfig:
    """`plan_run` for `vidrefine t2v`: stage II from the generator's frame size, plus stage I.

    The generator's DiT is planned when the plugin says what it is (`dit_config` and
    `latent_shape`, as the bundled FlashVideo plugin does); its offload follows the plan's.
    """
    from vidrefine.planner import apply_plan, plan_memory

    stage1 = None
    dit_config = getattr(plugin, "dit_config", None)
    if dit_config is not None and hasattr(plugin, "latent_shape"):
        frames, _channels, h, w = plugin.latent_shape()
        p = dit_config.patch_size
        stage1 = (dit_config, frames * (h // p) * (w // p) + dit_config.text_length)
    budget = device_budget_gb(config, device)
    plan = plan_memory(config, tuple(plugin.size_hw), vram_gb=budget, stage1=stage1)
    progress.info(plan.line())
    return config if budget is None else apply_plan(config, plan)
