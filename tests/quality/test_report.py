"""The HTML report: complete or absent, local only, real PNGs; the command's one-line errors."""

from __future__ import annotations

import json
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.quality.clips import bicubic, decoded, panning_frames, write_clip
from vidrefine.cli import cli
from vidrefine.errors import ExitCode, OutputExists
from vidrefine.io.probe import probe
from vidrefine.quality import compare_clips, write_report
from vidrefine.quality import report as report_module


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    source = write_clip(folder / "in.mp4", panning_frames())
    up = bicubic(decoded(source))
    up[6] = up[5]
    return source, write_clip(folder / "out.mp4", up)


@pytest.fixture(scope="module")
def result(clips):
    return compare_clips(*clips)


def run(args: list[str]) -> tuple[int, str, str]:
    """`vidrefine ARGS` in this process: (exit code, stdout, stderr)."""
    done = CliRunner().invoke(cli, args)
    return done.exit_code, done.stdout, done.stderr


class Page(HTMLParser):
    """Every tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails for anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_existing_report_folder_is_refused_and_kept_when_overwrite_is_not_given(result, tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(OutputExists):
        write_report(result, folder)
    assert (folder / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_report_leaves_nothing_behind_when_writing_fails(result, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report_module, "plot_metrics", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(result, tmp_path / "report")
    assert list(tmp_path.iterdir()) == []


def test_report_is_local_with_pngs_of_the_stated_sizes_when_it_replaces_an_old_one(
    result, tmp_path
):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    page = write_report(result, folder, overwrite=True)
    assert not (folder / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary left
    text = page.read_text()
    assert "http" not in text.lower()
    parser = Page()
    parser.feed(text)
    assert not [tag for tag, _ in parser.tags if tag in ("script", "link", "iframe")]
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) >= 2  # the plots and at least one contact sheet
    for attrs in images:
        assert png_size(folder / attrs["src"]) == (int(attrs["width"]), int(attrs["height"]))
    video = next(attrs["src"] for tag, attrs in parser.tags if tag == "video")
    assert probe(folder / video).frame_count == result.frames
    assert json.loads((folder / "metrics.json").read_text())["flicker_frames"] == [6, 7]


def test_compare_command_prints_a_table_and_json_when_given_two_clips(clips):
    code, out, err = run(["compare", str(clips[0]), str(clips[1])])
    assert code == 0, err
    assert "warping ratio" in out and "CIEDE2000" in out
    code, out, err = run(["compare", str(clips[0]), str(clips[1]), "--json"])
    assert code == 0, err
    data = json.loads(out)
    assert data["frames"] == 12 and data["flicker_frames"] == [6, 7]


@pytest.mark.parametrize("case", ["missing", "frame count", "report exists"])
def test_compare_command_fails_with_one_line_when_input_is_bad(case, clips, tmp_path):
    source, output = clips
    args = ["compare", str(source), str(output)]
    expected = ExitCode.BAD_INPUT
    if case == "missing":
        args[2] = str(tmp_path / "nope.mp4")
    elif case == "frame count":
        args[2] = str(write_clip(tmp_path / "short.mp4", decoded(output)[:9]))
    else:
        (tmp_path / "report").mkdir()
        args += ["--report", str(tmp_path / "report")]
        expected = ExitCode.OUTPUT_EXISTS
    code, out, err = run(args)
    assert code == expected and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("vidrefine: error:"), err
