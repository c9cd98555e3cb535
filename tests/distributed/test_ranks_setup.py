"""The pieces of a torchrun run that need no second process: modes, order, who prints what."""

from __future__ import annotations

import io
from fractions import Fraction

import pytest

from vidrefine.cli.environment import Environment
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput
from vidrefine.pipeline.scaleout import choose_mode, longest_first
from vidrefine.plan.clip import SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.runtime.distributed import (
    environment_rank,
    hand_out,
    init_distributed,
    rank_info,
    setup_rows,
)

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
TORCHRUN |= {"MASTER_ADDR": "node0", "MASTER_PORT": "29500"}


@pytest.mark.parametrize(
    ("parallel", "clips", "ranks", "mode"),
    [
        ("auto", 5, 1, "single"),
        ("windows", 1, 1, "single"),  # one rank: accepted and ignored
        ("auto", 4, 4, "files"),
        ("auto", 3, 4, "windows"),
        ("files", 1, 4, "files"),
        ("sequence+guidance", 1, 4, "guidance+sequence"),
    ],
)
def test_mode_is_files_for_enough_clips_else_windows_when_auto(parallel, clips, ranks, mode):
    assert choose_mode(parallel, clips, ranks) == mode


def test_unknown_mode_is_bad_input_when_given_to_the_api() -> None:
    with pytest.raises(BadInput, match="parallel mode 'pipeline'"):
        choose_mode("pipeline", 2, 2)


def test_longest_clip_is_handed_out_first_when_clips_are_uneven() -> None:
    device = DeviceFacts("cpu", "cpu", None, 64.0)
    plans = [
        plan_clip(SourceFacts((48, 64), frames, Fraction(25), Fraction(1, 25)), RunConfig(), device)
        for frames in (49, 200, 49, 120)
    ]
    pending = [(None, plan, "") for plan in plans]
    assert longest_first(pending) == [1, 3, 0, 2]  # ties keep the batch order


def test_single_process_is_rank_0_of_1_and_initialises_nothing_without_torchrun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in TORCHRUN:
        monkeypatch.delenv(key, raising=False)
    assert init_distributed("cpu") == rank_info() == environment_rank()
    info = rank_info()
    assert (info.rank, info.world_size, info.backend, info.is_main) == (0, 1, None, True)
    assert list(hand_out(["a", "b"])) == [(0, "a"), (1, "b")]
    assert dict(setup_rows({}))["torchrun"].startswith("not launched")


def test_doctor_rows_name_rank_device_and_rendezvous_when_torchrun_set_the_environment() -> None:
    rows = dict(setup_rows(TORCHRUN))
    assert rows["torchrun"] == "rank 3 of 4"
    assert rows["rank -> device"] == "local rank 1 -> cpu"  # no GPU on the test machine
    assert rows["rendezvous"] == "node0:29500"
    assert environment_rank(TORCHRUN).local_rank == 1


def test_rank_other_than_0_prints_only_warnings_and_errors_prefixed_with_its_rank() -> None:
    err = io.StringIO()
    env = Environment.from_system(TORCHRUN)
    env.stderr, env.stdout = err, io.StringIO()
    env.note("fetching weights")
    progress = env.progress()
    with progress.task("windows", total=2) as bar:
        bar.advance()
    progress.info("c0.mp4: plan ...")
    progress.warn("a window was recomputed")
    env.error("it failed")
    assert err.getvalue().splitlines() == [
        "[rank 3] vidrefine: warning: a window was recomputed",
        "[rank 3] vidrefine: error: it failed",
    ]
    assert Environment.from_system({}).rank == 0
