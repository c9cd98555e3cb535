"""Window starts and cuts travel from the plan into the output's tags and back."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from tests.quality.clips import write_clip
from vidrefine.config import RunConfig
from vidrefine.io.writer import VideoWriter
from vidrefine.plan.clip import SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.quality.marks import Marks, plan_tags, read_marks


def test_window_starts_and_cuts_survive_the_output_tags_when_the_plan_has_shots(tmp_path):
    config = RunConfig(window_latent=4, window_overlap_latent=2)  # 13-frame windows, stride 8
    source = SourceFacts((48, 64), 40, Fraction(25), Fraction(1, 25), cuts=(20,))
    plan = plan_clip(source, config, DeviceFacts("cpu", "cpu", None, 16.0))
    path = tmp_path / "out.mp4"
    with VideoWriter(
        path,
        size_hw=(48, 64),
        time_base=Fraction(1, 25),
        fps=Fraction(25),
        metadata=plan_tags(plan),
    ) as writer:
        writer.write(np.zeros((2, 48, 64, 3), np.uint8), np.arange(2))
    assert read_marks(path) == Marks(windows=(8, 28), cuts=(20,))


def test_a_clip_made_elsewhere_has_no_marks_when_read(tmp_path):
    assert (
        read_marks(write_clip(tmp_path / "plain.mp4", np.zeros((2, 48, 64, 3), np.uint8))) is None
    )
