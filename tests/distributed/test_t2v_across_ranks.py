"""`torchrun -m vidrefine t2v`: prompts x seeds handed out to 2 CPU ranks, one manifest.

Previews only: stage II across ranks is what the `upscale` tests check; here it is the
hand-out of (prompt, seed) clips and the one manifest rank 0 writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from t2v_fixtures import register_plugins, write_tiny_weights

from tests.distributed.harness import ROOT, WAIT_FOR_PEER, torchrun
from tests.media import read_all
from vidrefine.cli import cli
from vidrefine.pipeline.t2v import SCRATCH_DIR
from vidrefine.pipeline.t2v_manifest import MANIFEST_NAME

pytestmark = pytest.mark.slow


def test_two_ranks_make_the_previews_of_one_process_and_one_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = write_tiny_weights(tmp_path / "weights")
    site = register_plugins(
        tmp_path / "site", {"tiny-flashvideo": "t2v_fixtures:tiny_stage1"}, dist="vr-tiny"
    )
    monkeypatch.syspath_prepend(str(site))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red kite over a grey sea at dawn\na lamp in a dark room\n")
    base = ["t2v", "--prompt-file", str(prompts), "--seeds", "0", "--preview-only", "--generator"]
    base += ["tiny-flashvideo", "--weights", str(weights), "--offline"]
    base += ["--preset", str(weights / "tiny.toml")]
    single = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output

    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(site)])
    # the first rank to publish a preview waits for the other: the hand-out is dynamic, and a
    # rank still loading its generator under load would otherwise find no clip left to draw
    env = {"PYTHONPATH": path, WAIT_FOR_PEER: "60"}
    run = torchrun(2, [*base, "-o", str(tmp_path / "two")], tmp_path, env=env)
    assert run.returncode == 0, run.console + run.stderr[0] + run.stderr[1]
    one, two = (json.loads((tmp_path / d / MANIFEST_NAME).read_text()) for d in ("single", "two"))
    assert len(two["clips"]) == 2
    for a, b in zip(one["clips"], two["clips"], strict=True):
        assert (a["prompt_number"], a["seed"], a["preview"]) == (
            b["prompt_number"],
            b["seed"],
            b["preview"],
        )
        made = read_all(tmp_path / "two" / b["preview"])[0]
        assert np.array_equal(made, read_all(tmp_path / "single" / a["preview"])[0])
    assert not (tmp_path / "two" / SCRATCH_DIR).exists()
    # both ranks made clips (dynamic hand-out) and only rank 0 printed the table
    made_by = {rank: paths for rank, paths in run.published.items() if paths}
    assert set(made_by) == {0, 1}
    assert run.stderr[0].count("vidrefine t2v") == 1 and "vidrefine t2v" not in run.stderr[1]
    # the T5 tokenizer's import of torch._dynamo did not keep the process group alive past shutdown
    assert sorted(run.threads_at_exit) == [0, 1] and not run.gloo_threads_at_exit()
