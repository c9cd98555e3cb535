"""The rules every clip job's output meets, for `vidrefine upscale` and the Python API alike: a
container vidrefine writes, and no two jobs writing one file. Checked before any work;
standard library only, so the CLI checks its arguments without loading the model stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vidrefine.errors import BadInput

OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov")  # containers the writer muxes H.264/HEVC and audio into


def check_output_suffix(output: Path, shown: str = "") -> None:
    """BadInput unless `output` ends in one of OUTPUT_SUFFIXES; `shown` prefixes the path in
    the message (`-o ` for the flag).
    """
    if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise BadInput(f"{shown}{output}: the output must end in {', '.join(OUTPUT_SUFFIXES)}")


def _identity(path: Path) -> object:
    """What makes two output paths one file: the file itself when it exists (hard and symbolic
    links), else the path with `..` and links resolved.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return Path(path).resolve()
    return (stat.st_dev, stat.st_ino)


def check_distinct_outputs(jobs: Iterable[tuple[Path, Path]]) -> None:
    """BadInput when two (input, output) jobs would write one file, whatever the spelling.

    With overwrite both would report success and one result would be lost; without it the
    second would be refused only after the first's work.
    """
    seen: dict[object, Path] = {}
    for source, output in jobs:
        key = _identity(output)
        if key in seen:
            raise BadInput(f"{seen[key]} and {source} would both be written to {output}")
        seen[key] = source


def check_job_outputs(jobs: Iterable[tuple[Path, Path]]) -> None:
    """Every output has a container suffix we write, and no two jobs share one."""
    jobs = list(jobs)
    for _, output in jobs:
        check_output_suffix(output)
    check_distinct_outputs(jobs)


__all__ = ["OUTPUT_SUFFIXES", "check_distinct_outputs", "check_job_outputs", "check_output_suffix"]
