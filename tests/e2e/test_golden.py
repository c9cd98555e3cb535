"""Outputs recorded before the ClipPlan redesign (issue 11) are reproduced bit for bit."""

from __future__ import annotations

import json

import pytest

from tests.e2e.golden import GOLDEN, cli_invoke, run_t2v_case, run_upscale_cases, versions

RECORD = json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def same_versions() -> None:
    if RECORD["versions"] != versions():
        pytest.skip(f"fingerprints were written with {RECORD['versions']}, this is {versions()}")


@pytest.mark.slow
def test_upscale_outputs_match_the_recorded_frames_when_the_libraries_are_the_same(
    tmp_path, same_versions
):
    cases = run_upscale_cases(tmp_path, cli_invoke)
    for name, hashes in cases.items():
        assert hashes == RECORD["cases"][name], f"case {name}: frames changed"


@pytest.mark.slow
def test_t2v_outputs_match_the_recorded_frames_when_the_libraries_are_the_same(
    tmp_path, same_versions
):
    assert run_t2v_case(tmp_path, cli_invoke) == RECORD["cases"]["t2v"]
