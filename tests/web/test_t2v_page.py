"""The Text to video tab's endpoints, in process: previews of prompts x seeds, then the ticked
ones refined through the job queue like any uploaded clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from t2v_fixtures import TINY_STAGE1_FRAMES, register_plugins, write_tiny_weights

from vidrefine.io.probe import probe
from vidrefine.pipeline.api import Refiner
from vidrefine.web.engine import Engine
from vidrefine.web.handlers import Page, PageError
from vidrefine.web.jobs import DONE, JobQueue
from vidrefine.web.paths import Folders


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator[Page]:
    root = tmp_path_factory.mktemp("t2v-page")
    weights = write_tiny_weights(root / "weights")
    site = register_plugins(
        root / "site", {"tiny-flashvideo": "t2v_fixtures:tiny_stage1"}, dist="vr-tiny-web"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.setenv("VIDREFINE_CACHE", str(root / "resume"))
        preset = str(weights / "tiny.toml")
        folders = Folders.create(root / "work", root / "out")
        refiner = Refiner.from_pretrained(weights, preset, offline=True)
        engine = Engine(
            refiner, preset, folders, generator="tiny-flashvideo", weights=weights, offline=True
        )
        yield Page(engine, JobQueue(folders.jobs_file, engine.run), folders)


def test_ticked_previews_are_refined_with_their_prompts_when_committed(page):
    prompt = "a red fox trots through deep snow at dawn"
    previews = page.t2v_previews(prompt, "0, 1")

    assert [Path(p).name for p in previews] == ["p001_seed0_preview.mp4", "p001_seed1_preview.mp4"]
    assert all(Path(p).is_relative_to(page.folders.work) for p in previews)
    jobs = page.t2v_commit([previews[1]]).split()
    assert len(jobs) == 1
    job = page.queue.wait(jobs[0], timeout_s=120)
    assert job.state == DONE, job.message
    assert job.caption == prompt
    assert probe(job.output).frame_count == TINY_STAGE1_FRAMES


@pytest.mark.parametrize(
    ("prompts", "seeds", "message"),
    [("# only a comment\n", "0", "no prompt"), ("a fox", "0, x", "seeds must be whole numbers")],
)
def test_bad_prompts_or_seeds_are_one_line_before_any_model_loads_when_given(
    page, prompts, seeds, message
):
    with pytest.raises(PageError, match=message):
        page.t2v_previews(prompts, seeds)
