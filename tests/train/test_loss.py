"""The training loss and its pieces against flashvideo-spec §5.2-§5.4 and §5.7."""

from __future__ import annotations

import pytest
import torch

from vidrefine.config import DiTConfig
from vidrefine.errors import BadInput
from vidrefine.models.dit import VideoDiT
from vidrefine.sampling.timesteps import shifted_grid
from vidrefine.train.loss import (
    LossDraws,
    LossSettings,
    degrade_latent,
    draw_loss,
    flow_time,
    loss_inputs,
    reset_stage2_embeddings,
    shift_time,
    split_step_range,
    velocity_loss,
)

SHAPE = (2, 4, 2, 2)  # one sample's (T, C, h, w)


def _draws(uniform: list[float], steps: list[int], keep: list[bool]) -> LossDraws:
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((len(steps), *SHAPE), generator=gen)
    return LossDraws(torch.tensor(uniform), torch.tensor(steps), noise, torch.tensor(keep))


@pytest.mark.parametrize(
    ("step", "a"),
    [(600, 0.3571), (650, 0.2940), (675, 0.263959), (700, 0.2351), (750, 0.1811)],
)
def test_latent_degradation_uses_the_shift_one_table_when_a_step_is_drawn(step, a) -> None:
    ones, zeros = torch.ones(1, *SHAPE), torch.zeros(1, *SHAPE)
    signal = degrade_latent(ones, torch.tensor([step]), zeros)
    noise = degrade_latent(zeros, torch.tensor([step]), ones)
    assert signal.flatten()[0].item() == pytest.approx(a, abs=6e-5 if step != 675 else 1e-6)
    assert noise.flatten()[0].item() == pytest.approx((1 - a * a) ** 0.5, abs=1e-4)


def test_shifted_time_is_the_samplers_shift_when_applied_to_a_uniform_grid() -> None:
    grid = torch.linspace(0, 1, 6, dtype=torch.float64)
    assert torch.allclose(shift_time(grid, 2.5), shifted_grid(5, 2.5))
    expected = [0, 0.09091, 0.21053, 0.375, 0.61538, 1]  # spec §5.4, "exact t"
    assert shift_time(grid, 2.5).tolist() == pytest.approx(expected, abs=1e-5)


def test_inputs_follow_the_flow_convention_when_built_for_a_batch() -> None:
    settings = LossSettings(rounding="exact", step_range=(675, 675))
    gen = torch.Generator().manual_seed(1)
    z_hr, z_deg = torch.randn((2, *SHAPE), generator=gen), torch.randn((2, *SHAPE), generator=gen)
    context = torch.randn(2, 3, 8, generator=gen)
    draws = _draws([0.0, 0.5], [675, 675], [True, False])
    inputs = loss_inputs(z_hr, z_deg, context, draws, settings)
    z_lr = degrade_latent(z_deg, draws.steps, draws.noise)
    t = shift_time(torch.tensor([0.0, 0.5]), 2.5)
    assert torch.allclose(inputs.x_t[0], z_lr[0])  # t = 0 is the degraded start
    assert torch.allclose(inputs.x_t[1], (1 - t[1]) * z_lr[1] + t[1] * z_hr[1])
    assert torch.allclose(inputs.target, z_hr - z_lr)  # velocity toward the HR latent
    assert inputs.timestep_index.tolist() == pytest.approx((1000 - 1000 * t).tolist())
    assert inputs.ref_step.tolist() == [675.0, 675.0]
    assert inputs.num_frames.tolist() == [2.0, 2.0]  # the latent frame count
    assert torch.equal(inputs.context[0], context[0])
    assert not inputs.context[1].any()  # a dropped caption is the zero uncond


def test_bf16_rounding_feeds_what_the_original_fed_when_chosen() -> None:
    settings = LossSettings(step_range=(675, 675))
    t = flow_time(torch.tensor([0.3]), settings)
    assert t.item() == torch.tensor(t.item()).bfloat16().item()
    inputs = loss_inputs(
        torch.zeros(1, *SHAPE),
        torch.zeros(1, *SHAPE),
        torch.zeros(1, 3, 8),
        _draws([0.3], [675], [True]),
        settings,
    )
    assert inputs.ref_step.tolist() == [676.0]  # 675 in bf16 (spec §5.4)
    index = (1000 - 1000 * t.bfloat16()).float()
    assert inputs.timestep_index.tolist() == index.tolist()


def test_velocity_loss_is_the_mean_squared_velocity_error_when_evaluated() -> None:
    settings = LossSettings()
    inputs = loss_inputs(
        torch.randn(2, *SHAPE),
        torch.randn(2, *SHAPE),
        torch.randn(2, 3, 8),
        draw_loss(torch.Generator().manual_seed(2), SHAPE, [(650, 700), (701, 750)], settings),
        settings,
    )
    perfect = velocity_loss(lambda *_: inputs.target, inputs)
    zero = velocity_loss(lambda x, *_: torch.zeros_like(x), inputs)
    assert perfect.item() == 0.0
    assert zero.item() == pytest.approx(inputs.target.pow(2).mean().item())


def test_draws_are_seeded_and_in_range_when_repeated() -> None:
    settings = LossSettings(step_range=(600, 900))
    ranges = split_step_range(settings.step_range, 4)
    first = draw_loss(torch.Generator().manual_seed(3), SHAPE, ranges, settings)
    again = draw_loss(torch.Generator().manual_seed(3), SHAPE, ranges, settings)
    assert torch.equal(first.noise, again.noise) and torch.equal(first.steps, again.steps)
    for step, (lo, hi) in zip(first.steps.tolist(), ranges, strict=True):
        assert lo <= step <= hi
    assert ((first.uniform >= 0) & (first.uniform < 1)).all()


def test_captions_drop_one_time_in_ten_when_drawn_many_times() -> None:
    settings = LossSettings()
    draws = draw_loss(
        torch.Generator().manual_seed(4), (1, 1, 1, 1), [(675, 675)] * 20000, settings
    )
    assert (~draws.keep_caption).float().mean().item() == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 101, 150])
def test_step_sub_ranges_are_disjoint_and_cover_the_range_when_split(parts) -> None:
    ranges = split_step_range((650, 750), parts)
    assert len(ranges) == parts
    covered = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    if parts <= 101:
        assert covered == list(range(650, 751))  # disjoint, in order, complete
    else:
        assert set(covered) == set(range(650, 751))


@pytest.mark.parametrize(
    "settings",
    [
        {"step_range": (700, 650)},
        {"step_range": (0, 1000)},
        {"caption_dropout": 1.5},
        {"shift": 0.0},
        {"rounding": "fp8"},
    ],
)
def test_settings_are_refused_when_out_of_range(settings) -> None:
    with pytest.raises(BadInput):
        LossSettings(**settings)


def test_zeroed_embeddings_leave_the_output_unchanged_when_reset() -> None:
    tiny = {"hidden_size": 64, "num_layers": 1, "num_heads": 1, "text_dim": 8}
    torch.manual_seed(0)
    stage2 = VideoDiT(DiTConfig(**tiny, stage2_embeddings=True)).eval()
    stage1 = VideoDiT(DiTConfig(**tiny)).eval()
    shared = {k: v for k, v in stage2.state_dict().items() if not k.startswith(("frames", "ref"))}
    stage1.load_state_dict(shared)
    x, ctx, index = torch.randn(1, 2, 16, 4, 4), torch.randn(1, 3, 8), torch.tensor([500.0])
    kwargs = {"num_frames": torch.tensor([2.0]), "ref_step": torch.tensor([676.0])}
    with torch.no_grad():
        before = stage2(x, index, ctx, **kwargs)
        reset_stage2_embeddings(stage2)
        after = stage2(x, index, ctx, **kwargs)
        base = stage1(x, index, ctx)
    assert not torch.allclose(before, base)  # the embeddings did something before
    assert torch.equal(after, base)
    assert stage2.ref_step_embed.fc1.weight.abs().sum() > 0  # only the last linear is zeroed


def test_training_can_start_from_zeroed_embeddings_when_asked() -> None:
    from vidrefine.train.lora import weights_fingerprint
    from vidrefine.train.model import ModelSettings, make_trainable

    cfg = DiTConfig(hidden_size=64, num_layers=1, num_heads=1, text_dim=8, stage2_embeddings=True)
    torch.manual_seed(0)
    dit = VideoDiT(cfg)
    base = weights_fingerprint(dit)
    trainable = make_trainable(dit, ModelSettings(full=True, reset_embeddings=True))
    assert trainable.base_fingerprint == base  # adapters still belong to the loaded base
    assert not any(p.any() for p in dit.frames_embed.parameters())
    assert not dit.ref_step_embed.fc2.weight.any() and dit.ref_step_embed.fc1.weight.any()


def test_holdout_draws_from_a_stream_no_epoch_order_uses_when_seeded_alike() -> None:
    # the held-out windows and the epochs' data order were once the same torch stream (seed 0,
    # epoch 0): which windows were held out then decided the first epoch's order
    from vidrefine.train.loop import holdout_generator, order_generator

    orders = {order_generator(s, e).initial_seed() for s in range(20) for e in range(50)}
    assert not {holdout_generator(seed).initial_seed() for seed in range(20)} & orders
