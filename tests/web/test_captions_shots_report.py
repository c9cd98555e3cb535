"""The page's shots, caption box, "Auto" captions and compare report, in process (no model
runs: jobs are refined by a stand-in that writes a clip, captions come from a tiny plugin).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from captioner_fixtures import make_cut_clip
from tiny_runs import run_cli

from tests.media import make_clip
from vidrefine.captions import read_captions, sidecar_captions
from vidrefine.pipeline.api import Refiner
from vidrefine.web.engine import Engine
from vidrefine.web.handlers import Page, PageError
from vidrefine.web.jobs import DONE, Job, JobQueue
from vidrefine.web.paths import Folders

CUT_S = 1.5  # make_cut_clip's cut: frame 15 of 30 at 10 fps
SRT = (
    "1\n00:00:00,000 --> 00:00:01,500\nA warm gradient slides to the right.\n\n"
    "2\n00:00:01,500 --> 00:00:03,000\nA cold checkerboard slides down.\n"
)


class Describer:
    """A captioner plugin (API 1) without weights: each shot is described by its frame count."""

    api_version, name, required_weights = 1, "describer", ()
    frame_rate, max_frames, memory_gb = 2.0, 8, 0.0

    def describe(self) -> dict:
        return {"captioner": self.name}

    def load(self, paths, *, device, dtype) -> None:
        """Nothing to load."""

    def caption(self, frames, fps, *, max_tokens) -> str:
        return f"A shot seen in {len(frames)} frames."

    def release(self) -> None:
        """Nothing to free."""


def register_describer(folder: Path) -> None:
    """A distribution registering `Describer` in the `vidrefine.captioners` group."""
    info = folder / "vr_web_describer-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vr-web-describer\nVersion: 1.0\n")
    entry = f"describer = {__name__}:Describer\n"
    (info / "entry_points.txt").write_text(f"[vidrefine.captioners]\n{entry}")


def stand_in_refine(job: Job, progress) -> int:
    """A job's 'refine': its output is a clip twice the size of the 30-frame test clip."""
    make_clip(job.output, frames=30, size_hw=(96, 128), fps=10)
    return 0


@pytest.fixture(scope="module")
def page(tmp_path_factory, stage2_weights, tiny_preset) -> Iterator[Page]:
    root = tmp_path_factory.mktemp("page-extras")
    register_describer(root / "site")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "site"))
        importlib.invalidate_caches()
        folders = Folders.create(root / "work", root / "out")
        refiner = Refiner.from_pretrained(stage2_weights, str(tiny_preset), offline=True)
        engine = Engine(refiner, str(tiny_preset), folders, weights=stage2_weights, offline=True)
        yield Page(engine, JobQueue(folders.jobs_file, stand_in_refine), folders)


@pytest.fixture(scope="module")
def clip(page) -> Path:
    """A two-shot clip in the work folder's uploads (30 frames, a hard cut at 1.5 s)."""
    return make_cut_clip(page.folders.clips / "cut.mp4")


def test_facts_show_the_shots_found_as_the_preset_says_when_a_clip_is_chosen(page, clip):
    view = page.choose(str(clip))
    assert "30 frames" in view.facts and view.facts.endswith("shots: finding...")
    facts = page.shots(str(clip))
    assert facts.startswith(view.facts.split(", shots:")[0])
    assert facts.endswith(f"shots: 2 shots (cuts at {CUT_S:.2f} s)")
    assert page.shots(str(clip), "faithful").endswith(
        "shots: not detected (the preset turns shot detection off)"
    )


def test_caption_box_holds_the_captions_file_before_the_sidecar_caption_when_both_exist(page, clip):
    clip.with_suffix(".txt").write_text("A clip\nin two shots.\n")
    try:
        assert page.choose(str(clip)).caption == "A clip in two shots."
        sidecar_captions(clip).write_text(SRT)
        assert page.choose(str(clip)).caption == SRT.strip()
    finally:
        sidecar_captions(clip).unlink(missing_ok=True)
        clip.with_suffix(".txt").unlink()


def test_srt_in_the_caption_box_is_the_jobs_captions_file_when_the_clip_is_refined(page, clip):
    job = page.queue.wait(page.refine(str(clip), SRT), timeout_s=30)
    assert job.state == DONE, job.message
    saved = Path(job.captions)
    assert saved.parent == page.folders.job_files / job.id
    assert [c.text for c in read_captions(saved)] == [
        "A warm gradient slides to the right.",
        "A cold checkerboard slides down.",
    ]
    assert job.caption == "A warm gradient slides to the right."  # for shots no cue covers
    with pytest.raises(PageError, match=r"^the caption box: cue 1: expected a time range"):
        page.refine(str(clip), "1\n00:00:01 --> later\nA broken cue.\n")


def test_auto_caption_is_the_clis_one_line_message_when_the_captioners_weights_are_missing(
    page, clip, tmp_path, monkeypatch
):
    monkeypatch.setattr(page.engine, "weights", tmp_path)
    with pytest.raises(PageError) as raised:
        page.auto_caption(str(clip))
    code, cli_says = run_cli(["caption", str(clip), "--weights", str(tmp_path), "--offline"])
    assert code == 3 and cli_says.strip().splitlines()[-1] == f"vidrefine: error: {raised.value}"
    assert "vidrefine download --only captioner" in str(raised.value)
    assert not sidecar_captions(clip).exists()


def test_auto_caption_fills_the_box_with_a_caption_per_shot_when_a_captioner_is_installed(
    page, clip, monkeypatch
):
    monkeypatch.setattr(page.engine, "captioner", "describer")
    text = page.auto_caption(str(clip))
    cues = read_captions(sidecar_captions(clip))  # kept beside the upload: prefilled next time
    sidecar_captions(clip).unlink()
    assert [(c.start_s, c.end_s) for c in cues] == [(0.0, CUT_S), (CUT_S, 3.0)]
    assert [c.text for c in cues] == ["A shot seen in 3 frames."] * 2  # 1.5 s at 2 fps
    assert text.count("-->") == 2 and "A shot seen in 3 frames." in text


def test_compare_report_is_written_in_the_jobs_folder_and_shown_again_when_asked(page, clip):
    queued = page.refine(str(clip), "A clip in two shots.")
    job = page.queue.wait(queued, timeout_s=30)
    summary, pictures = page.compare(job.id)
    folder = page.folders.job_files / job.id
    assert "| PSNR |" in summary and "30 frames, 64x48 -> 128x96" in summary
    assert [Path(p).name for p in pictures][0] == "metrics.png" and len(pictures) >= 2
    assert all(Path(p).is_relative_to(folder / "report") for p in pictures)
    written = (folder / "summary.md").stat().st_mtime_ns
    assert page.compare(job.id) == (summary, pictures)  # shown again, not measured anew
    assert (folder / "summary.md").stat().st_mtime_ns == written

    page.remove(job.id)
    assert not folder.exists() and not Path(job.output).exists()
    with pytest.raises(PageError, match="no job"):
        page.compare(job.id)
