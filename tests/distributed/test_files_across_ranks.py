"""`torchrun -m vidrefine upscale FOLDER`: clips handed out to 3, then 2 CPU ranks (gloo).

A run on 3 ranks loses a rank (SIGKILL: the first one about to publish an output); the same
command on 2 ranks finishes the batch. Two torchrun runs (each costs seconds of start-up per
rank on two cores) serve every assertion: the outputs, their frames against a one-process run,
who wrote each output (seen by an audit hook, not by vidrefine's own account), the windows the
second run reused, and who printed what.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import run_cli

from tests.distributed.harness import DIE_RANK, RankRun, torchrun
from tests.media import make_clip, read_all
from tests.train.conftest import write_weights

pytestmark = pytest.mark.slow
FRAMES = (9, 5, 5)  # uneven: 2 windows, then 1 and 1 (5-frame windows, stride 4)
# tiny_runs.TEST_PRESET with windows of 2 latents (5 frames) overlapping by 1, not 4 by 2
PRESET = 'crf = 0\nsteps = 2\nwindow_latent = 2\nwindow_overlap_latent = 1\nvae_mode = "whole"\n'


@dataclass(frozen=True)
class Batch:
    """A folder of clips, the flags every run uses, and the one-process outputs."""

    root: Path
    clips: Path
    flags: list[str]
    reference: Path

    def outputs(self, folder: Path) -> list[Path]:
        return [folder / f"c{i}_64p.mp4" for i in range(len(FRAMES))]

    def args(self, out: Path, *extra: str) -> list[str]:
        """`upscale` of the folder into `out`; `--parallel files` even where auto would pick
        windows (a rerun with fewer clips left than ranks)."""
        command = ["upscale", str(self.clips), "-o", str(out), *self.flags, "--json"]
        return [*command, "--parallel", "files", *extra]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, stage2_weights: Path) -> Batch:
    """The clips, and their one-process outputs on the training tests' small weights (one resnet
    a VAE level, a one-block DiT) beside the shared tiny T5."""
    root = tmp_path_factory.mktemp("ranks")
    weights = write_weights(root / "weights", stage2_weights / "t5-v1_1-xxl")
    preset = root / "short-windows.toml"
    preset.write_text(PRESET)
    clips = root / "clips"
    clips.mkdir()
    for index, frames in enumerate(FRAMES):
        make_clip(clips / f"c{index}.mp4", frames=frames, size_hw=(32, 48), seed=index)
        (clips / f"c{index}.txt").write_text(f"clip number {index} of a tiny batch")
    flags = ["--weights", str(weights), "--offline", "--preset", str(preset)]
    flags += ["--size", "64p"]
    batch = Batch(root, clips, flags, root / "single")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDREFINE_CACHE", str(root / "cache-single"))
        torch.set_num_threads(1)  # as each rank (torchrun sets OMP_NUM_THREADS=1)
        try:
            code, text = run_cli(batch.args(batch.reference))
        finally:
            torch.set_num_threads(threads)
    assert code == 0, text
    return batch


def frames_of(path: Path) -> np.ndarray:
    return read_all(path)[0]


def json_rows(run: RankRun) -> list[dict]:
    """Rank 0's `--json` results (rank 0 prints them alone)."""
    text = run.stdout[0]
    return json.loads(text[text.index("[") :])


def assert_same_as_one_process(batch: Batch, out: Path) -> None:
    for made, single in zip(batch.outputs(out), batch.outputs(batch.reference), strict=True):
        assert np.array_equal(frames_of(made), frames_of(single)), made.name


def test_batch_killed_on_3_ranks_is_finished_by_2_as_one_process_and_only_rank_0_reports(
    batch: Batch,
) -> None:
    out, cache = batch.root / "out", {"VIDREFINE_CACHE": str(batch.root / "cache")}
    killed = torchrun(3, batch.args(out), batch.root, env={DIE_RANK: "first", **cache})
    assert killed.returncode != 0 and killed.died is not None, killed.console
    assert killed.published[killed.died] == []  # it died before its output was in place
    done = {p for paths in killed.published.values() for p in paths}
    assert all(len(killed.publishers(p)) == 1 for p in done)
    unfinished = [p for p in batch.outputs(out) if not p.exists()]
    assert unfinished and not done & {p.resolve() for p in unfinished}

    rerun = torchrun(2, batch.args(out), batch.root, env=cache)
    assert rerun.returncode == 0, rerun.console + rerun.stderr[0] + rerun.stderr[1]
    assert_same_as_one_process(batch, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in batch.outputs(out))
    rows = [row for row in json_rows(rerun) if not row.get("skipped")]
    assert sorted(row["output"] for row in rows) == sorted(str(p) for p in unfinished)
    assert sum(row["reused_windows"] for row in rows) >= 1  # the killed rank's windows
    for row in rows:  # each output published once, by the rank that reports making it
        assert rerun.publishers(Path(row["output"]).resolve()) == [row["rank"]], row
    # rank 0 prints the progress, the table and one line per rank; rank 1 nothing but warnings
    assert rerun.stderr[0].count("vidrefine upscale") == 1
    assert "rank 0: " in rerun.stderr[0] and "rank 1: " in rerun.stderr[0]
    assert ("windows:" in rerun.stderr[0]) == any(row["rank"] == 0 for row in rows)
    assert rerun.stdout[1] == ""
    assert "vidrefine" not in rerun.stderr[1].replace("[rank 1] vidrefine", "")
    # each rank left the process group for good: no gloo thread to tear down at exit
    assert sorted(rerun.threads_at_exit) == [0, 1] and not rerun.gloo_threads_at_exit()
