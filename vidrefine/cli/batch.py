"""From `upscale` arguments to a list of jobs: inputs expanded, outputs named and checked,
captions found. Nothing is written here; every problem is a one-line error before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vidrefine.captions import Captions, captions_for_clip, read_text_file
from vidrefine.errors import BadInput, OutputNotWritable
from vidrefine.pipeline.outputs import check_distinct_outputs, check_output_suffix

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts"}
    | {".flv", ".wmv", ".3gp", ".ogv"}
)


@dataclass(frozen=True)
class UpscaleJob:
    """One clip to refine: where from, where to, and the caption to condition on."""

    input: Path
    output: Path
    caption: str
    caption_source: str  # "--caption", the caption file, or the sidecar path
    captions: Captions | None = None  # per-shot captions (SRT, docs/captions.md)


def _folder_input(path: Path) -> bool:
    """Whether a file found in an input folder is one to refine.

    Hidden files, our temporary files (`vidrefine.io.atomic.TEMP_MARKER`) and vidrefine's own
    outputs (they carry the `vidrefine_job` tag) are not: a batch run into its own folder must
    not refine `a_1080p.mp4` into `a_1080p_1080p.mp4`. Files named on the command line are
    always taken as given.
    """
    from vidrefine.io.atomic import TEMP_MARKER

    if path.suffix.lower() not in VIDEO_SUFFIXES or path.name.startswith("."):
        return False
    if TEMP_MARKER in path.name or not path.is_file():
        return False
    from vidrefine.io.writer import job_tag  # PyAV loads only when a folder is given

    return job_tag(path) is None


def expand_inputs(inputs: tuple[Path, ...]) -> tuple[list[Path], bool]:
    """Files as given, folders as their video files (sorted, not recursive).

    A folder's hidden files, temporary files and vidrefine outputs are left out
    (`_folder_input`). Returns the files and whether any input was a folder.
    """
    if not inputs:
        raise BadInput("no input given: vidrefine upscale CLIP.mp4 [CLIP2.mp4 | FOLDER ...]")
    files: list[Path] = []
    any_folder = False
    for path in inputs:
        if path.is_dir():
            any_folder = True
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            found = [p for p in videos if _folder_input(p)]
            if not found:
                suffixes = " ".join(sorted(VIDEO_SUFFIXES))
                if videos:
                    raise BadInput(
                        f"{path} holds no video files to refine: only hidden files, vidrefine's "
                        "temporary files or its outputs"
                    )
                raise BadInput(f"{path} holds no video files (looked for {suffixes})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise BadInput(f"{path} is neither a file nor a folder")
        else:
            raise BadInput(f"{path} does not exist")
    return list(dict.fromkeys(files)), any_folder


def output_name(input_path: Path, size: str) -> str:
    """`clip.avi` at size 1080p -> `clip_1080p.mp4`."""
    return f"{input_path.stem}_{size.strip().lower()}.mp4"


def plan_outputs(
    files: list[Path], output_arg: str | None, any_folder: bool, size: str
) -> list[Path]:
    """Name one output per input: beside it, inside the -o folder, or the -o file itself.

    `output_arg` is -o as typed: a trailing slash marks a folder that does not exist yet.
    """
    several = len(files) > 1 or any_folder
    if output_arg is None:
        if any_folder:
            raise BadInput("a folder input needs -o FOLDER for the results")
        return [f.with_name(output_name(f, size)) for f in files]
    output = Path(output_arg).expanduser()
    if several:
        if output.suffix.lower() in VIDEO_SUFFIXES or output.is_file():
            raise BadInput(
                f"{len(files)} inputs need -o to be a folder, not the file {output}"
                " (or give one input)"
            )
        return [output / output_name(f, size) for f in files]
    from vidrefine.io.atomic import check_name_length

    check_name_length(output)
    if output.is_dir() or output_arg.endswith(("/", os.sep)):
        return [output / output_name(files[0], size)]
    check_output_suffix(output, "-o ")
    return [output]


def check_output(output: Path, *, input_path: Path, overwrite: bool) -> None:
    """The writer's checks (vidrefine.io.atomic), except that missing folders are allowed and an
    existing output made by vidrefine (it carries a resume key) passes.

    Folders that do not exist yet are created by `make_output_folders` once every job has been
    checked; here it is enough that their nearest existing ancestor is a writable folder. Whether
    an existing vidrefine output is skipped (same job: the rerun of a finished command) or refused
    (other settings) is decided by the pipeline, which knows the job's key.
    """
    ancestor = output.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor == output.parent:
        from vidrefine.io.writer import check_output_or_tagged  # PyAV loads only when needed

        check_output_or_tagged(input_path, output, overwrite=overwrite)
        return
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputNotWritable(f"cannot write {output}: {ancestor} is not a writable folder")


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its ancestors that do not exist yet, outermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def make_output_folders(jobs: list[UpscaleJob]) -> list[Path]:
    """Create the folders the outputs go into (after all jobs passed their checks).

    Returns the folders this call created, outermost first, for `remove_empty_folders`.
    """
    created: list[Path] = []
    for folder in dict.fromkeys(job.output.parent for job in jobs):
        for missing in missing_folders(folder):
            try:
                missing.mkdir()
            except FileExistsError:
                continue  # made meanwhile by someone else: not ours to remove
            except BaseException:
                remove_empty_folders(created)
                raise
            created.append(missing)
    return created


def remove_empty_folders(created: list[Path]) -> None:
    """Remove the folders a failed run created (deepest first), each only if it is empty."""
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            continue  # not empty (or not removable): keep it


@contextmanager
def removed_on_failure(created: list[Path]) -> Iterator[None]:
    """Remove the empty folders of `created` when the block raises (Ctrl-C and SIGTERM too)."""
    try:
        yield
    except BaseException:
        remove_empty_folders(created)
        raise


def remove_stale_temps_in(folders: list[Path], note: Callable[[str], None]) -> None:
    """Remove temporary files killed runs left in the existing `folders`, with a note for each."""
    from vidrefine.io.atomic import remove_stale_temps

    for folder in dict.fromkeys(folders):
        if folder.is_dir():
            for path in remove_stale_temps(folder, settle=True):  # a run killed just now too
                note(f"removed {path}: a temporary file left by a run that was killed")


def read_caption_file(path: Path) -> str:
    """A caption file's text with its whitespace (line breaks too) collapsed to single spaces."""
    text = " ".join(read_text_file(path, "caption file").split())
    if not text:
        raise BadInput(f"caption file {path} is empty")
    return text


def sidecar_path(input_path: Path) -> Path:
    """`clip.mp4` -> `clip.txt` beside it."""
    return input_path.with_suffix(".txt")


def find_caption(
    input_path: Path, caption: str | None, caption_file: Path | None
) -> tuple[str, str]:
    """The caption for one input and where it came from: flag, file, or sidecar `clip.txt`."""
    if caption is not None:
        return " ".join(caption.split()), "--caption"
    if caption_file is not None:
        return read_caption_file(caption_file), str(caption_file)
    sidecar = sidecar_path(input_path)
    if sidecar.is_file():
        return read_caption_file(sidecar), str(sidecar)
    from vidrefine.pipeline.t2v_manifest import caption_for_preview, manifest_path

    recorded = caption_for_preview(input_path)
    if recorded is not None:
        return " ".join(recorded.split()), str(manifest_path(input_path.parent))
    raise BadInput(
        f"no caption for {input_path}: pass --caption TEXT or --caption-file FILE, or put one in "
        f"{sidecar} (the model was trained on long, detailed descriptions)"
    )


def plan_upscale_jobs(
    inputs: tuple[Path, ...],
    output: str | None,
    *,
    caption: str | None,
    caption_file: Path | None,
    size: str,
    overwrite: bool,
    captions: Path | None = None,
) -> list[UpscaleJob]:
    """Validate everything about the inputs and outputs and return the jobs, in input order."""
    if caption is not None and caption_file is not None:
        raise BadInput("give --caption or --caption-file, not both")
    if captions is not None and (caption is not None or caption_file is not None):
        raise BadInput("give --captions (per shot) or --caption/--caption-file (one), not both")
    if caption_file is not None:
        read_caption_file(caption_file)
    files, any_folder = expand_inputs(inputs)
    outputs = plan_outputs(files, output, any_folder, size)
    check_distinct_outputs(zip(files, outputs, strict=True))
    jobs = []
    for src, dst in zip(files, outputs, strict=True):
        check_output(dst, input_path=src, overwrite=overwrite)
        jobs.append(upscale_job(src, dst, caption, caption_file, captions, several=len(files) > 1))
    return jobs


def upscale_job(
    src: Path,
    dst: Path,
    caption: str | None = None,
    caption_file: Path | None = None,
    captions: Path | None = None,
    *,
    several: bool,
) -> UpscaleJob:
    """One job with its captions: an explicit caption flag first, then the captions file
    (`--captions`, else the sidecar `clip.captions.srt`), then `find_caption`'s sidecars.
    """
    if captions is not None and several and not captions.is_dir():
        raise BadInput(
            f"--captions {captions}: with several inputs, give a folder holding "
            "<clip name>.captions.srt for each"
        )
    if caption is None and caption_file is None:
        per_shot = captions_for_clip(src, captions)
        if per_shot is not None:
            return UpscaleJob(src, dst, per_shot.default, per_shot.source, per_shot)
    text, source = find_caption(src, caption, caption_file)
    return UpscaleJob(src, dst, text, source)


SHORT_CAPTION_WORDS = 25  # the models were trained on 67-130-word descriptions (spec §11)


def short_caption_warnings(jobs: list[UpscaleJob]) -> list[str]:
    """One warning per distinct caption much shorter than what the models were trained on
    (every caption of a captions file counts).
    """
    warnings = []
    for caption in dict.fromkeys(text for job in jobs for text in _captions_of(job)):
        words = len(caption.split())
        if words < SHORT_CAPTION_WORDS:
            warnings.append(
                f"caption of {words} words ({caption[:40]!r}...): the model was trained on long, "
                "detailed descriptions (about 70-130 words: subject, setting, light, camera); "
                "short captions give less detail"
            )
    return warnings


def _captions_of(job: UpscaleJob) -> list[str]:
    """The captions a job uses: its one caption, or each non-empty cue of its captions file."""
    if job.captions is None:
        return [job.caption]
    return [cue.text for cue in job.captions.cues if cue.text.strip()]
