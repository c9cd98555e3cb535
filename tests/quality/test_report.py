"""The HTML report: complete or absent, local only, real PNGs; the command's one-line errors."""

from __future__ import annotations

import dataclasses
import json
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.text import Text

from tests.quality.clips import bicubic, decoded, panning_frames, write_clip
from vidrefine.cli import cli
from vidrefine.errors import ExitCode, OutputExists
from vidrefine.io.probe import probe
from vidrefine.quality import compare_clips, write_report
from vidrefine.quality import report as report_module
from vidrefine.quality.marks import Marks
from vidrefine.quality.pictures import metrics_figure


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
    write_report(result, folder)
    page = write_report(result, folder, overwrite=True)
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
    video = next(attrs for tag, attrs in parser.tags if tag == "video")
    assert probe(folder / video["src"]).frame_count == result.frames
    sheet_width = max(int(a["width"]) for a in images if a["src"].startswith("frame_"))
    assert int(video["width"]) >= sheet_width  # shown as large as the pictures above it
    file_h, file_w = probe(folder / video["src"]).display_hw
    assert abs(int(video["height"]) - int(video["width"]) * file_h / file_w) <= 1
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
        (tmp_path / "report" / "notes.txt").write_text("mine")
        args += ["--report", str(tmp_path / "report")]
        expected = ExitCode.OUTPUT_EXISTS
    code, out, err = run(args)
    assert code == expected and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("vidrefine: error:"), err


@pytest.fixture(scope="module")
def short_results(tmp_path_factory) -> dict[int, object]:
    """Compare results of 5- and 20-frame clips (where matplotlib's own ticks fall between
    frames: 0.5, 1.5 and 2.5, 7.5), with a repeated frame as in `clips`.
    """
    folder = tmp_path_factory.mktemp("short")
    results = {}
    for frames in (5, 20):
        source = write_clip(folder / f"in{frames}.mp4", panning_frames(frames))
        up = bicubic(decoded(source))
        up[frames // 2] = up[frames // 2 - 1]
        results[frames] = compare_clips(source, write_clip(folder / f"out{frames}.mp4", up))
    return results


def visible_ticks(ax) -> list[float]:
    low, high = sorted(ax.get_xlim())
    return [float(t) for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("frames", [5, 20])
def test_per_frame_plots_tick_whole_frames_only_when_the_clip_is_short(short_results, frames):
    figure = metrics_figure(short_results[frames])
    figure.canvas.draw()
    for ax in figure.axes:
        ticks = visible_ticks(ax)
        assert len(ticks) >= 2, ticks
        assert all(t == int(t) for t in ticks), (ax.get_title(loc="left"), ticks)


@pytest.mark.parametrize("frames", [5, 20])
def test_plot_legend_and_titles_cover_no_data_and_stay_on_the_figure_when_drawn(
    short_results, frames
):
    figure = metrics_figure(short_results[frames])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legends = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    assert len(legends) == 1  # the L*a*b* panel's
    boxes = [ax.get_window_extent(renderer) for ax in figure.axes]
    labels = [legends[0].get_window_extent(renderer)]
    labels += [left_title(ax).get_window_extent(renderer) for ax in figure.axes]
    for label in labels:
        assert figure.bbox.contains(label.x0, label.y0) and figure.bbox.contains(label.x1, label.y1)
        assert not any(label.overlaps(box) for box in boxes), label
    assert not legends[0].get_window_extent(renderer).overlaps(labels[4])  # the panel's title


def left_title(ax):
    """The Text artist of the axes' left-aligned title."""
    wanted = ax.get_title(loc="left")
    return next(c for c in ax.get_children() if isinstance(c, Text) and c.get_text() == wanted)


def marked(result, windows: tuple[int, ...], cuts: tuple[int, ...] = ()):
    return dataclasses.replace(result, marks=Marks(windows, cuts))


def test_report_says_one_window_starting_at_frame_0_when_the_plan_had_one_window(result):
    text = report_module.page(marked(result, ()), (10, 10), {})
    assert "One window (starts at frame 0)" in text
    assert "(none)" not in text


def test_report_lists_every_window_start_from_frame_0_when_the_plan_had_several(result):
    text = report_module.page(marked(result, (8,), (5,)), (10, 10), {})
    assert "Windows start at frames 0, 5, 8" in text
    assert "cut" in text and "frames 5" in text
