"""`upscale --color-fix --report`: frames and timing kept, a job-tagged report written."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from tiny_runs import run_cli

from tests.media import make_clip
from vidrefine.quality.marks import read_marks


def times(path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


@pytest.mark.slow  # one tiny upscale (about as long as each test in tests/e2e)
def test_upscale_with_a_color_fix_keeps_timing_and_writes_a_marked_report_when_asked(
    tmp_path, stage2_weights, tiny_preset
):
    clip = make_clip(tmp_path / "in.mp4", frames=5, size_hw=(48, 64), vfr=True)  # one window
    out, report = tmp_path / "out.mp4", tmp_path / "report"
    args = [str(clip.path), "-c", "x y z", "-o", str(out), "--weights", str(stage2_weights)]
    args += ["--preset", str(tiny_preset), "--size", "64p", "--color-fix", "wavelet"]
    code, text = run_cli(["upscale", *args, "--report", str(report)])
    assert code == 0, text
    np.testing.assert_allclose(times(out), times(clip.path), atol=1e-3)
    marks = read_marks(out)
    assert marks is not None and marks.windows == marks.cuts == ()  # made by vidrefine
    data = json.loads((report / "metrics.json").read_text())
    assert data["frames"] == 5 and data["marks"] == {"windows": [], "cuts": []}
    assert (report / "index.html").is_file()
