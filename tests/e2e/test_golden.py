"""Recorded end-to-end outputs are reproduced: within the CPU tolerance on any x86-64 CPU and
thread count, bit for bit where the CPU fingerprint is the recording's (tests/e2e/golden.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.golden import (
    GOLDEN,
    case_mismatches,
    cli_invoke,
    cpu_fingerprint,
    decoded_frames,
    frames_record,
    mismatch,
    records,
    run_t2v_case,
    run_upscale_cases,
    versions,
)

RECORD = json.loads(GOLDEN.read_text())


def _exact() -> bool:
    """Bits are compared only on the CPU, kernel choice and thread count that recorded them."""
    return RECORD["cpu"] == cpu_fingerprint()


@pytest.fixture(scope="module")
def same_libraries() -> None:
    if RECORD["versions"] != versions():
        pytest.skip(f"the frames were recorded with {RECORD['versions']}, this is {versions()}")


@pytest.fixture(scope="module")
def upscale_outputs(tmp_path_factory, same_libraries) -> dict[str, Path]:
    return run_upscale_cases(tmp_path_factory.mktemp("golden"), cli_invoke)


def _check(current: dict) -> None:
    recorded = {case: RECORD["cases"][case] for case in current}
    problems = case_mismatches(recorded, current, exact=_exact())
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_upscale_outputs_match_the_recorded_frames_when_run_on_any_cpu(upscale_outputs) -> None:
    _check(records({name: [path] for name, path in upscale_outputs.items()}))


@pytest.mark.slow
def test_t2v_outputs_match_the_recorded_frames_when_run_on_any_cpu(tmp_path, same_libraries):
    _check(records({"t2v": run_t2v_case(tmp_path, cli_invoke)}))


@pytest.mark.slow
def test_golden_check_fails_when_the_output_really_changes(upscale_outputs) -> None:
    """The tolerance for other CPUs still catches real changes: one sampling step more (case
    `streamed` is `default` with 3 steps; layer streaming changes no number), every pixel one
    level brighter (what an off-by-half in quantising does), the first and last frames swapped;
    and, where bits are compared, a one-level change of a single pixel."""
    recorded = RECORD["cases"]["default"]["default.mp4"]
    frames = decoded_frames(upscale_outputs["default"])
    assert mismatch(recorded, frames_record(frames), exact=False) is None
    streamed = frames_record(decoded_frames(upscale_outputs["streamed"]))
    brighter = [np.clip(f.astype(np.int16) + 1, 0, 255).astype(np.uint8) for f in frames]
    swapped = [frames[-1], *frames[1:-1], frames[0]]
    for changed in (streamed, frames_record(brighter), frames_record(swapped)):
        assert "beyond the CPU tolerance" in (mismatch(recorded, changed, exact=False) or "")
    one_pixel = [f.copy() for f in frames]
    one_pixel[3][10, 10, 1] ^= 1
    current, touched = frames_record(frames), frames_record(one_pixel)
    assert mismatch(current, touched, exact=False) is None  # below the tolerance
    assert "1 of 20 frames changed bit-wise" in (mismatch(current, touched, exact=True) or "")
