"""`upscale` and `t2v` arguments: every bad one is a one-line error and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from vidrefine.cli import cli
from vidrefine.cli.batch import plan_upscale_jobs
from vidrefine.cli.t2v import parse_seeds, read_prompt_file
from vidrefine.errors import BadInput, ExitCode, OutputExists


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def clip(folder: Path, name: str = "clip.mp4") -> Path:
    """A stand-in input: argument checks never decode it."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by argument checks")
    return path


def fails(tmp_path: Path, *args: str, code: int = ExitCode.BAD_INPUT) -> str:
    """Run vidrefine, expect a one-line error with `code` and an untouched tmp_path."""
    before = files_under(tmp_path)
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("vidrefine: error: ")
    assert "Traceback" not in result.output
    assert files_under(tmp_path) == before
    return result.stderr


@pytest.mark.parametrize("size", ["huge", "1080", "0x0", "1920x", "12x99999", "-720p"])
def test_size_nonsense_is_bad_input_naming_size_when_given(tmp_path, size):
    message = fails(tmp_path, "upscale", str(clip(tmp_path)), "--caption", "c", "--size", size)
    assert "--size" in message


@pytest.mark.parametrize("strength", ["599", "751", "0"])
def test_strength_outside_600_to_750_is_bad_input_when_given(tmp_path, strength):
    message = fails(tmp_path, "upscale", str(clip(tmp_path)), "--strength", strength)
    assert "--strength" in message and "600" in message and "750" in message


@pytest.mark.parametrize("strength", ["600", "750"])
def test_strength_at_the_range_ends_is_accepted_when_given(strength):
    result = CliRunner().invoke(cli, ["upscale", "--strength", strength, "--show-config"])
    assert result.exit_code == 0
    assert f"strength = {strength}" in result.stdout


def test_missing_caption_file_is_bad_input_naming_it_when_given(tmp_path):
    message = fails(
        tmp_path, "upscale", str(clip(tmp_path)), "--caption-file", str(tmp_path / "cap.txt")
    )
    assert "cap.txt" in message and "does not exist" in message


def test_empty_caption_file_is_bad_input_when_given(tmp_path):
    (tmp_path / "cap.txt").write_text("  \n\n")
    message = fails(
        tmp_path, "upscale", str(clip(tmp_path)), "--caption-file", str(tmp_path / "cap.txt")
    )
    assert "empty" in message


def test_caption_and_caption_file_together_are_refused_when_both_given(tmp_path):
    (tmp_path / "cap.txt").write_text("a caption")
    fails(
        tmp_path,
        "upscale",
        str(clip(tmp_path)),
        "--caption",
        "x",
        "--caption-file",
        str(tmp_path / "cap.txt"),
    )


def test_missing_caption_points_at_the_sidecar_when_none_is_given(tmp_path):
    message = fails(tmp_path, "upscale", str(clip(tmp_path)))
    assert str(tmp_path / "clip.txt") in message


def test_several_inputs_need_a_folder_output_when_o_names_a_file(tmp_path):
    a, b = clip(tmp_path, "a.mp4"), clip(tmp_path, "b.mp4")
    message = fails(tmp_path, "upscale", str(a), str(b), "-c", "x", "-o", str(tmp_path / "o.mp4"))
    assert "folder" in message


def test_folder_input_needs_an_output_folder_when_o_is_missing(tmp_path):
    clip(tmp_path / "in", "a.mp4")
    message = fails(tmp_path, "upscale", str(tmp_path / "in"), "--caption", "x")
    assert "-o" in message


def test_folder_without_videos_is_bad_input_when_given(tmp_path):
    (tmp_path / "empty").mkdir()
    message = fails(tmp_path, "upscale", str(tmp_path / "empty"), "-c", "x", "-o", "out/")
    assert "no video files" in message


def test_output_equal_to_input_is_refused_when_given(tmp_path):
    src = clip(tmp_path)
    message = fails(tmp_path, "upscale", str(src), "--caption", "x", "-o", str(src), "--overwrite")
    assert "overwrite the input" in message


def test_existing_output_needs_overwrite_when_it_is_there(tmp_path):
    src = clip(tmp_path)
    out = clip(tmp_path, "done.mp4")
    args = ("upscale", str(src), "--caption", "x", "-o", str(out))
    message = fails(tmp_path, *args, code=ExitCode.OUTPUT_EXISTS)
    assert "--overwrite" in message


def test_output_under_a_file_is_not_writable_when_a_parent_is_not_a_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    message = fails(
        tmp_path,
        "upscale",
        str(clip(tmp_path)),
        "-c",
        "x",
        "-o",
        str(tmp_path / "afile" / "o.mp4"),
    )
    assert "is not a folder" in message


def test_unknown_output_suffix_is_refused_when_one_input_is_given(tmp_path):
    message = fails(tmp_path, "upscale", str(clip(tmp_path)), "-c", "x", "-o", "out.gif")
    assert ".mp4" in message


def test_jobs_take_sidecar_captions_and_folder_outputs_when_planned(tmp_path):
    a, b = clip(tmp_path / "in", "a.mp4"), clip(tmp_path / "in", "b.mkv")
    (tmp_path / "in" / "a.txt").write_text("A long\n  caption.\n")
    (tmp_path / "in" / "notes.md").write_text("not a video")
    with pytest.raises(BadInput, match="b.mkv"):  # b has no caption
        plan_upscale_jobs(
            (tmp_path / "in",),
            str(tmp_path / "out"),
            caption=None,
            caption_file=None,
            size="720p",
            overwrite=False,
        )
    (tmp_path / "in" / "b.txt").write_text("Another caption.")
    jobs = plan_upscale_jobs(
        (tmp_path / "in",),
        str(tmp_path / "out"),
        caption=None,
        caption_file=None,
        size="720p",
        overwrite=False,
    )
    assert [(j.input, j.output, j.caption) for j in jobs] == [
        (a, tmp_path / "out" / "a_720p.mp4", "A long caption."),
        (b, tmp_path / "out" / "b_720p.mp4", "Another caption."),
    ]


def test_same_output_for_two_inputs_is_refused_when_names_collide(tmp_path):
    a, b = clip(tmp_path / "x", "clip.mp4"), clip(tmp_path / "y", "clip.mp4")
    with pytest.raises(BadInput, match="both"):
        plan_upscale_jobs(
            (a, b),
            str(tmp_path / "out"),
            caption="c",
            caption_file=None,
            size="1080p",
            overwrite=False,
        )


def test_overwrite_allows_an_existing_output_when_given(tmp_path):
    src, out = clip(tmp_path), clip(tmp_path, "o.mp4")
    with pytest.raises(OutputExists):
        plan_upscale_jobs(
            (src,), str(out), caption="c", caption_file=None, size="1080p", overwrite=False
        )
    jobs = plan_upscale_jobs(
        (src,), str(out), caption="c", caption_file=None, size="1080p", overwrite=True
    )
    assert jobs[0].output == out


def test_single_input_without_o_writes_beside_it_when_planned(tmp_path):
    src = clip(tmp_path, "holiday.mov")
    jobs = plan_upscale_jobs(
        (src,), None, caption=" a  b ", caption_file=None, size="1080p", overwrite=False
    )
    assert jobs[0].output == tmp_path / "holiday_1080p.mp4"
    assert jobs[0].caption == "a b"


# t2v


@pytest.mark.parametrize("seeds", ["", "0,,1", "a", "-1", "1,1", "1.5", "0;1"])
def test_seed_list_that_does_not_parse_is_bad_input_when_given(tmp_path, seeds):
    message = fails(tmp_path, "t2v", "--prompt", "p", "--seeds", seeds, "-o", str(tmp_path / "o"))
    assert "--seeds" in message


def test_seed_list_parses_with_spaces_when_well_formed():
    assert parse_seeds("0, 1 ,22") == [0, 1, 22]


def test_empty_prompt_file_is_bad_input_when_only_comments_and_blanks(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# a comment\n\n   \n#another\n")
    message = fails(tmp_path, "t2v", "--prompt-file", str(prompts), "-o", str(tmp_path / "o"))
    assert "no prompts" in message


def test_prompt_file_skips_blank_lines_and_comments_when_read(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# header\nA fox.\n\n  A  lighthouse at dusk.  \n#x\n")
    assert read_prompt_file(prompts) == ["A fox.", "A lighthouse at dusk."]


def test_missing_prompt_file_is_bad_input_when_given(tmp_path):
    message = fails(tmp_path, "t2v", "--prompt-file", str(tmp_path / "nope.txt"))
    assert "nope.txt" in message


def test_t2v_needs_a_prompt_when_none_is_given(tmp_path):
    fails(tmp_path, "t2v", "-o", str(tmp_path / "o"))


def test_list_generators_reports_cleanly_when_run():
    result = CliRunner().invoke(cli, ["t2v", "--list-generators"])
    assert result.exit_code == 0
    assert "generator" in result.stdout


def test_short_captions_are_warned_about_once_when_much_shorter_than_training():
    from pathlib import Path

    from vidrefine.cli.batch import UpscaleJob, short_caption_warnings

    long_caption = " ".join(["word"] * 80)
    jobs = [
        UpscaleJob(Path("a.mp4"), Path("a_o.mp4"), "a red car", "--caption"),
        UpscaleJob(Path("b.mp4"), Path("b_o.mp4"), "a red car", "--caption"),
        UpscaleJob(Path("c.mp4"), Path("c_o.mp4"), long_caption, "--caption"),
    ]
    warnings = short_caption_warnings(jobs)
    assert len(warnings) == 1 and "3 words" in warnings[0]
