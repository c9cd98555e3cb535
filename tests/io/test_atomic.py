"""atomic_output / check_output / VideoWriter: nothing half-written, nothing clobbered."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest

from tests.media import make_clip
from vidrefine.errors import OutputExists
from vidrefine.io.atomic import TEMP_MARKER, atomic_output
from vidrefine.io.probe import probe
from vidrefine.io.writer import VideoWriter


def test_temp_file_is_renamed_into_place_when_block_succeeds(tmp_path):
    final = tmp_path / "out.mp4"
    with atomic_output(final, overwrite=False) as temp:
        assert temp.parent == tmp_path and temp != final
        assert temp.name.startswith(".out" + TEMP_MARKER) and temp.suffix == ".mp4"
        temp.write_bytes(b"done")
        assert not final.exists()
    assert final.read_bytes() == b"done"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_temp_is_removed_and_final_untouched_when_block_raises(tmp_path, error):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"precious")
    with pytest.raises(error), atomic_output(final, overwrite=True) as temp:
        temp.write_bytes(b"partial")
        raise error()
    assert final.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_existing_output_is_refused_when_overwrite_is_false(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"precious")
    with pytest.raises(OutputExists, match="--overwrite"), atomic_output(final, overwrite=False):
        pass
    assert final.read_bytes() == b"precious"


def test_output_appearing_meanwhile_is_not_clobbered_when_overwrite_is_false(tmp_path):
    final = tmp_path / "out.mp4"
    with pytest.raises(OutputExists), atomic_output(final, overwrite=False) as temp:
        temp.write_bytes(b"mine")
        final.write_bytes(b"theirs")
    assert final.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_published_file_gets_umask_permissions_when_renamed(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "o.bin", overwrite=False) as temp:
            temp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "o.bin").stat().st_mode & 0o777 == 0o644


def _frames(n):
    return np.zeros((n, 16, 16, 3), np.uint8), np.arange(n)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_writer_leaves_no_file_when_interrupted_mid_write(tmp_path, error):
    src = make_clip(tmp_path / "src.mp4", frames=5, audio=True)
    final = tmp_path / "out.mp4"
    final.write_bytes(b"old")
    with (
        pytest.raises(error),
        VideoWriter(
            final,
            size_hw=(16, 16),
            time_base=Fraction(1, 25),
            fps=Fraction(25),
            audio_from=src.path,
            overwrite=True,
        ) as w,
    ):
        w.write(*_frames(3))
        raise error()
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "src.mp4"]


def test_writer_replaces_output_only_on_success_when_overwrite_is_true(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"old")
    with VideoWriter(
        final, size_hw=(16, 16), time_base=Fraction(1, 25), fps=Fraction(25), overwrite=True
    ) as w:
        w.write(*_frames(4))
        assert final.read_bytes() == b"old"
    assert probe(final).frame_count == 4
