"""Captions files (SRT, vidrefine/captions.py): parsed, written, checked, applied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidrefine.captions import (
    CaptionCue,
    caption_for,
    captions_for_clip,
    check_cues,
    format_srt,
    load_captions,
    parse_srt,
    read_captions,
    sidecar_captions,
    write_captions,
)
from vidrefine.errors import BadInput

SRT = (
    "\ufeff1\r\n00:00:00,000 --> 00:00:01,500\r\nA red fox trots through deep snow,\r\n"
    "its breath steaming in the cold.\r\n\r\n"
    "2\n00:00:01.500 --> 00:00:04,25\nA wooden cabin at dusk, warm light in the window.\n"
)


def test_cues_are_parsed_with_lines_joined_when_the_file_is_crlf_with_a_bom() -> None:
    cues = parse_srt(SRT, "clip.captions.srt")
    assert cues == (
        CaptionCue(0.0, 1.5, "A red fox trots through deep snow, its breath steaming in the cold."),
        CaptionCue(1.5, 4.25, "A wooden cabin at dusk, warm light in the window."),
    )


def test_written_file_reads_back_the_same_cues_when_round_tripped(tmp_path: Path) -> None:
    cues = (CaptionCue(0.0, 2.0, "one  caption\nover lines"), CaptionCue(2.0, 3661.5, "two"))
    path = tmp_path / "clip.captions.srt"
    write_captions(path, cues)
    assert read_captions(path) == (
        CaptionCue(0.0, 2.0, "one caption over lines"),
        CaptionCue(2.0, 3661.5, "two"),
    )
    assert "01:01:01,500" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.captions.srt"]  # no temp file
    assert format_srt(read_captions(path)) == path.read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file the user makes


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1\n00:00:00,000 --> 00:00:01,000\nfine\n\n2\n00:00:01 --> 00:00:02\nbad\n", "cue 2"),
        ("1\n00:00:02,000 --> 00:00:01,000\nbackwards\n", "cue 1 ends at 1.000 s"),
        ("just a caption, not SRT\n", "cue 1"),
    ],
)
def test_malformed_file_is_one_line_naming_file_and_cue_when_parsed(text: str, needle: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_srt(text, "x.captions.srt")
    message = str(err.value)
    assert message.startswith("x.captions.srt: ") and needle in message and "\n" not in message


def test_unreadable_files_are_bad_input_when_loaded(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        read_captions(tmp_path / "missing.srt")
    latin = tmp_path / "latin.srt"
    latin.write_bytes("1\n00:00:00,000 --> 00:00:01,000\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(BadInput, match="not UTF-8"):
        read_captions(latin)
    empty = tmp_path / "empty.srt"
    empty.write_text("1\n00:00:00,000 --> 00:00:01,000\n\n")
    with pytest.raises(BadInput, match="holds no caption"):
        load_captions(empty)


def test_overlap_and_times_past_the_end_are_errors_when_checked() -> None:
    overlap = (CaptionCue(0, 2, "a"), CaptionCue(1.5, 3, "b"))
    with pytest.raises(BadInput, match="cue 2 starts at 1.500 s, before cue 1 ends"):
        check_cues(overlap, 3.0, "f.srt")
    other_clip = (CaptionCue(0, 4, "a"), CaptionCue(4, 12, "b"))
    with pytest.raises(BadInput) as err:
        check_cues(other_clip, 8.0, "f.srt", frame_s=1 / 24)
    assert "another clip? cue 2 ends at 12.000 s, the clip is 8.000 s" in str(err.value)
    assert check_cues((CaptionCue(0, 8.04, "a"),), 8.0, "f.srt", frame_s=1 / 24) == []


def test_gaps_and_empty_captions_are_warnings_when_checked() -> None:
    cues = (CaptionCue(0, 2, "a"), CaptionCue(3, 4, "  "), CaptionCue(4, 5, "c"))
    warnings = check_cues(cues, 8.0, "f.srt", frame_s=1 / 24)
    assert len(warnings) == 3
    assert "no caption from 2.000 s to 3.000 s" in warnings[0]
    assert "cue 2 has an empty caption" in warnings[1]
    assert "to the end (8.000 s)" in warnings[2]


def test_shot_takes_the_cue_covering_most_of_it_when_captions_are_picked() -> None:
    cues = (CaptionCue(0, 1.6, "fox"), CaptionCue(1.6, 3.3, "cabin"), CaptionCue(4, 5, ""))
    assert caption_for(cues, 0.0, 1.54, "d") == "fox"
    assert caption_for(cues, 1.54, 3.33, "d") == "cabin"  # 0.06 s of fox, 1.7 s of cabin
    assert caption_for(cues, 3.5, 3.9, "d") == "cabin"  # a gap: the nearest captioned cue
    assert caption_for(cues, 4.0, 5.0, "d") == "d"  # an empty cue: the default caption
    assert caption_for((), 0.0, 1.0, "d") == "d"


def test_captions_file_is_found_beside_in_a_folder_or_as_named_when_looked_up(
    tmp_path: Path,
) -> None:
    clip = tmp_path / "clip.mp4"
    assert sidecar_captions(clip) == tmp_path / "clip.captions.srt"
    assert captions_for_clip(clip, None) is None
    write_captions(sidecar_captions(clip), (CaptionCue(0, 1, "beside"),))
    folder = tmp_path / "captions"
    folder.mkdir()
    assert captions_for_clip(clip, folder).cues[0].text == "beside"  # not in the folder
    write_captions(folder / "clip.captions.srt", (CaptionCue(0, 1, "in folder"),))
    assert captions_for_clip(clip, folder).default == "in folder"
    named = tmp_path / "named.srt"
    write_captions(named, (CaptionCue(0, 1, ""), CaptionCue(1, 2, "named")))
    found = captions_for_clip(clip, named)
    assert found.source == str(named) and found.default == "named"


def test_captions_flag_is_refused_with_a_caption_or_for_several_clips_when_given(
    tmp_path: Path,
) -> None:
    from tiny_runs import run_cli

    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for clip in clips:
        clip.write_bytes(b"never decoded")
    srt = tmp_path / "a.captions.srt"
    write_captions(srt, (CaptionCue(0, 1, "a fox"),))
    code, out = run_cli(["upscale", str(clips[0]), "-c", "a fox", "--captions", str(srt)])
    assert code == 2 and "give --captions (per shot) or --caption" in out
    several = [*map(str, clips), "-o", str(tmp_path / "out"), "--captions", str(srt)]
    code, out = run_cli(["upscale", *several])
    assert code == 2 and "with several inputs, give a folder" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.captions.srt", "a.mp4", "b.mp4"]
