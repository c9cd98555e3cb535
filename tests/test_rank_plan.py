"""Plans for several ranks: which rank refines which window, memory per rank, and layouts
that cannot work or do not fit refused before anything is loaded.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from tiny_runs import run_cli

from tests.media import make_clip
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput, DoesNotFit
from vidrefine.plan.clip import SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.ranks import RankLayout, layout_for, windows_by_rank

UHD_CLIP = SourceFacts((1080, 1920), 49, Fraction(24), Fraction(1, 24000))


def card(gb: float) -> DeviceFacts:
    return DeviceFacts("cuda", f"{gb:g} GB card", gb, 64.0)


def test_windows_go_round_robin_in_rounds_of_n_when_planned_for_3_ranks() -> None:
    source = SourceFacts((480, 640), 400, Fraction(24), Fraction(1, 24))  # 11 windows
    plan = plan_clip(source, RunConfig(size="480p"), card(80), layout=RankLayout("windows", 3))
    assert [w.rank for w in plan.windows] == [i % 3 for i in range(len(plan.windows))]
    held = windows_by_rank(plan.windows, 3)
    assert held[1] == list(range(1, len(plan.windows), 3))
    assert sorted(i for h in held.values() for i in h) == list(range(len(plan.windows)))
    alone = plan_clip(source, RunConfig(size="480p"), card(80))
    assert {w.rank for w in alone.windows} == {0} and plan.memory == alone.memory


def test_sequence_ranks_hold_a_kth_of_the_activations_when_guidance_ranks_hold_one_branch():
    config = RunConfig(size="1080p", cfg_batched=False)
    parts = {
        name: plan_clip(UHD_CLIP, config, card(80), layout=layout).memory.parts_gb
        for name, layout in {
            "one": RankLayout(),
            "guidance": RankLayout("guidance", 2),
            "sequence": RankLayout("sequence", 4),
        }.items()
    }
    one = parts["one"]["DiT activations"]  # in turn: one branch at a time
    assert parts["guidance"]["DiT activations"] == pytest.approx(one)  # one branch a rank
    assert parts["sequence"]["DiT activations"] == pytest.approx(one / 4, rel=0.01)
    assert "sequence exchange buffers" in parts["sequence"]


def test_a_layout_that_does_not_fit_is_refused_when_a_sequence_split_fits_the_same_card():
    config = RunConfig(size="2160p")
    for layout in (RankLayout(), RankLayout("guidance", 2), RankLayout("windows", 4)):
        with pytest.raises(DoesNotFit):
            plan_clip(UHD_CLIP, config, card(12), layout=layout)
    plan = plan_clip(UHD_CLIP, config, card(12), layout=RankLayout("sequence", 4))
    assert plan.memory.gpu_peak_gb <= 12


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        (("guidance", 3), "even number of ranks"),
        (("guidance+sequence", 5), "even number of ranks"),
        (("sequence", 31), "30 attention heads"),
        (("pipeline", 2), "not one of"),
    ],
)
def test_a_layout_that_cannot_work_is_a_one_line_error_when_planned(layout, words) -> None:
    with pytest.raises(BadInput, match=words):
        plan_clip(UHD_CLIP, RunConfig(), card(80), layout=RankLayout(*layout))


def test_auto_spreads_one_clip_over_windows_when_ranks_outnumber_the_clips() -> None:
    assert layout_for("auto", 4, clips=1) == RankLayout("windows", 4)
    assert layout_for("auto", 4, clips=9) == RankLayout("files", 4)
    assert layout_for("sequence", 1) == RankLayout()


def test_info_plan_shows_which_rank_refines_which_window_when_given_ranks(tmp_path) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=90, size_hw=(48, 64))  # 2+ windows of 49
    args = ["info", str(clip.path), "--plan", "--vram", "24", "--ranks", "2"]
    code, text = run_cli(args)
    assert code == 0, text
    assert "windows over 2 ranks" in text
    assert "rank 0" in text and "rank 1" in text and "windows 1, 3" in text
    code, text = run_cli([*args, "--json"])
    plan = json.loads(text)
    assert plan["layout"] == {"mode": "windows", "ranks": 2}
    ranks = [w["rank"] for w in plan["windows"]]
    assert len(ranks) >= 2 and ranks == [i % 2 for i in range(len(ranks))]
    code, text = run_cli([*args, "--parallel", "sequence", "--json"])
    assert "sequence exchange buffers" in json.loads(text)["memory"]["parts_gb"]


def test_clips_left_by_a_rerun_are_laid_out_for_their_number_when_auto_keeping_the_numbers():
    import torch

    from vidrefine.pipeline.batch import BatchPlans

    sources = [SourceFacts((480, 640), n, Fraction(24), Fraction(1, 24)) for n in (90, 49, 200)]
    batch = BatchPlans(tuple(sources), "auto", ranks=3)
    config, cpu = RunConfig(size="480p"), torch.device("cpu")
    first = batch.plan(config, cpu)
    assert {plan.layout for plan in first} == {RankLayout("files", 3)}
    rest = batch.subset([0, 2]).plan(config, cpu, first[0].models.offload)
    assert {plan.layout for plan in rest} == {RankLayout("windows", 3)}
    assert [w.rank for w in rest[1].windows] == [i % 3 for i in range(len(rest[1].windows))]
    for again, plan in zip(rest, (first[0], first[2]), strict=True):  # what the resume key reads
        assert (again.geometry, again.vae, again.memory, again.models) == (
            plan.geometry,
            plan.vae,
            plan.memory,
            plan.models,
        )
