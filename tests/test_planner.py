"""Memory planner: parameter counts, measured-vs-predicted DiT activations, choices, refusals."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from click.testing import CliRunner

from tests.media import make_clip
from vidrefine.cli.info import command
from vidrefine.config import STAGE1_DIT, STAGE2_DIT, DiTConfig, RunConfig
from vidrefine.errors import DoesNotFit
from vidrefine.models.dit import VideoDiT
from vidrefine.plan.clip import SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.memory import dit_activation_bytes, dit_tokens
from vidrefine.plan.model_sizes import (
    T5_XXL_BLOCK_PARAMS,
    T5_XXL_BLOCKS,
    T5_XXL_PARAMS,
    dit_param_count,
)
from vidrefine.presets import load_config
from vidrefine.runtime.live_memory import LiveTensorMemory

TINY = DiTConfig(hidden_size=128, num_layers=2, num_heads=2, text_dim=32, stage2_embeddings=True)
INPUT_HW = (270, 480)


def plan_memory(config: RunConfig, input_hw, *, vram_gb: float | None = None, stage1=None):
    """The memory part of a 49-frame clip's plan on a CUDA device of `vram_gb` (None: --vram)."""
    device = DeviceFacts("cuda", "test GPU", vram_gb, host_memory_gb=64.0)
    source = SourceFacts(tuple(input_hw), 49, Fraction(24), Fraction(1, 24))
    return plan_clip(source, config, device, stage1=stage1).memory


@pytest.mark.parametrize("cfg", [STAGE2_DIT, STAGE1_DIT, TINY], ids=["stage2", "stage1", "tiny"])
def test_parameter_formula_matches_the_module_when_counted_on_meta(cfg: DiTConfig) -> None:
    with torch.device("meta"):
        model = VideoDiT(cfg)
    assert dit_param_count(cfg) == sum(p.numel() for p in model.parameters())


def test_live_memory_counts_new_storages_and_not_views_when_tensors_come_and_go() -> None:
    with LiveTensorMemory() as memory:
        a = torch.empty(1000)  # 4000 bytes
        b = torch.empty(2000)  # 8000 bytes
        view = b[:10]
        b.add_(1.0)
        del a
        c = torch.empty(500)  # 2000 bytes, after a's 4000 were freed
    assert memory.peak == 12_000
    assert memory.live == 10_000
    del view, c


def _measured_peak(cfg: DiTConfig, latent_thw: tuple[int, int, int], batch: int, autocast: bool):
    torch.manual_seed(0)
    dtype = torch.bfloat16 if autocast else torch.float32
    model = VideoDiT(cfg).eval().to(dtype)
    t, h, w = latent_thw
    x = torch.randn(batch, t, 16, h, w, dtype=dtype)
    context = torch.randn(batch, 226, cfg.text_dim, dtype=dtype)
    steps = torch.full((batch,), 500.0, dtype=dtype)
    ref = torch.full((batch,), 676.0, dtype=dtype)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with torch.no_grad(), amp, LiveTensorMemory() as memory:
        model(x, steps, context, ref_step=ref)
    return memory.peak, dit_tokens(t, (h, w), cfg)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_dit_activation_prediction_tracks_measured_peaks_when_tokens_grow(
    autocast, monkeypatch
) -> None:
    # Two token counts 5x apart (and two batch sizes): each prediction within 15% of the
    # measured working set, and the growth between them within 5% (linear, not quadratic).
    # Slices as at 1080p, where a sequence is 13x CHUNK_TOKENS: here 418 and 2146 tokens.
    monkeypatch.setattr("vidrefine.models.dit_blocks.CHUNK_TOKENS", 32)
    small, tokens_small = _measured_peak(TINY, (3, 16, 16), 1, autocast)
    large, tokens_large = _measured_peak(TINY, (5, 32, 48), 2, autocast)
    predicted_small = dit_activation_bytes(tokens_small, 1, TINY, autocast=autocast)
    predicted_large = dit_activation_bytes(tokens_large, 2, TINY, autocast=autocast)
    assert abs(predicted_small / small - 1) < 0.15, (predicted_small, small)
    assert abs(predicted_large / large - 1) < 0.15, (predicted_large, large)
    assert abs((predicted_large / predicted_small) / (large / small) - 1) < 0.05


def test_big_budget_keeps_everything_resident_and_batched_when_planned() -> None:
    plan = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=80)
    assert (plan.offload, plan.cfg_batched) == ("none", True)
    assert plan.tokens == 13 * 68 * 120 + 226
    assert plan.gpu_peak_gb <= 80


def test_tighter_budget_trades_speed_for_memory_when_batched_guidance_does_not_fit() -> None:
    roomy = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=80)
    streamed = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=10)
    tight = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=6)
    assert (streamed.offload, streamed.cfg_batched) == ("layer", True)
    assert (tight.offload, tight.cfg_batched) == ("layer", False)
    assert tight.gpu_peak_gb <= 6 < roomy.phases_gb["DiT"]
    assert tight.phases_gb["DiT"] < streamed.phases_gb["DiT"] < roomy.phases_gb["DiT"]


def test_low_vram_preset_fits_16_gb_with_layer_streaming_when_planned() -> None:
    plan = plan_memory(load_config("low-vram", {"size": "1080p"}), INPUT_HW)
    assert plan.offload == "layer" and plan.budget_gb == 16.0
    assert plan.gpu_peak_gb <= 16.0


def test_planner_refuses_with_the_phase_named_when_nothing_fits() -> None:
    with pytest.raises(DoesNotFit, match="nothing fits in 4.0 GB.*DiT"):
        plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=4)


def test_t5_block_constants_match_the_transformers_module_when_built_on_meta() -> None:
    from transformers import T5Config, T5EncoderModel

    from benchmarks.refine_parts import T5_XXL

    config = T5Config(**T5_XXL, feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    with torch.device("meta"):
        model = T5EncoderModel(config)
    blocks = model.encoder.block
    assert len(blocks) == T5_XXL_BLOCKS
    assert sum(p.numel() for p in blocks[1].parameters()) == T5_XXL_BLOCK_PARAMS
    assert sum(p.numel() for p in model.parameters()) == T5_XXL_PARAMS


def test_layer_offload_streams_t5_too_when_a_9_gb_card_is_planned() -> None:
    # T5-XXL alone is 8.9 GB in bf16: only streaming its blocks lets a 9 GB card run
    plan = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=9)
    assert plan.offload == "layer" and plan.gpu_peak_gb <= 9
    resident = plan.parts_gb["T5 weights on GPU"]
    whole = T5_XXL_PARAMS * 2 / 1024**3
    assert resident == pytest.approx(whole - 22 * T5_XXL_BLOCK_PARAMS * 2 / 1024**3)
    assert resident < 0.15 * whole


def test_vae_tiles_are_sized_for_the_room_the_dit_leaves_when_the_budget_is_tight() -> None:
    roomy = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=80)
    tight = plan_memory(RunConfig(size="1080p"), INPUT_HW, vram_gb=16)
    assert tight.vae_tile_latent and (roomy.vae_tile_latent or 1000) > tight.vae_tile_latent
    dit_resident = tight.parts_gb["DiT weights on GPU"]
    assert tight.vae.estimate_gb <= 16 - 1.0 - dit_resident  # the VAE phase fits beside the DiT
    assert tight.phases_gb["VAE"] <= 16


def test_info_plan_prints_the_peaks_and_refuses_faithful_on_16_gb_when_asked(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=3, size_hw=(36, 64))
    shown = CliRunner().invoke(command, [str(clip.path), "--plan", "--vram", "24"])
    assert shown.exit_code == 0, shown.output
    assert "GPU peak" in shown.output and "host RAM peak" in shown.output
    refused = CliRunner().invoke(
        command, [str(clip.path), "--plan", "--vram", "16", "--preset", "faithful"]
    )
    assert isinstance(refused.exception, DoesNotFit)


def test_t2v_stage_one_phase_makes_a_12_gb_card_stream_when_the_generator_is_planned() -> None:
    from vidrefine.config import STAGE1_DIT

    stage1 = (STAGE1_DIT, 13 * 16 * 30 + 226)  # 49 frames at 256x480
    upscale_only = plan_memory(RunConfig(size="1080p"), (256, 480), vram_gb=12)
    with_generator = plan_memory(RunConfig(size="1080p"), (256, 480), vram_gb=12, stage1=stage1)
    assert upscale_only.offload == "none" and "stage I" not in upscale_only.phases_gb
    # the 5.6 B generator (10.4 GiB in bf16) cannot sit on a 12 GB card next to its activations
    assert with_generator.offload == "layer"
    assert with_generator.phases_gb["stage I"] < 12
    roomy = plan_memory(RunConfig(size="1080p"), (256, 480), vram_gb=24, stage1=stage1)
    weights = dit_param_count(STAGE1_DIT) * 2 / 1024**3
    assert roomy.offload == "none" and roomy.parts_gb["stage-I weights on GPU"] == weights
