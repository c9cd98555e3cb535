"""The two folders the page may touch, and the check every path from a request goes through.

Uploads land in a private work folder (mode 0700); refined clips go to the output folder. A
path that resolves (links followed) outside both is refused with one line, whatever the request.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from vidrefine.errors import BadInput

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


@dataclass(frozen=True)
class Folders:
    """The work folder and what it holds, and the output folder (all resolved)."""

    work: Path
    outputs: Path
    clips: Path  # uploaded clips
    previews: Path  # preview clips
    t2v: Path  # text-to-video previews, one folder per request
    gradio_cache: Path  # Gradio's uploads and cache (GRADIO_TEMP_DIR)
    job_files: Path  # a folder per job: its captions file and its compare report
    jobs_file: Path  # the job list, kept across page reloads and server restarts

    @classmethod
    def create(cls, work: Path, outputs: Path) -> Folders:
        """Make the folders (the work folder private to this user) and resolve them."""
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o700)
        outputs.mkdir(parents=True, exist_ok=True)
        work = work.resolve()
        subfolders = [work / name for name in ("clips", "previews", "t2v", "gradio", "jobs")]
        for folder in subfolders:
            folder.mkdir(exist_ok=True)
        return cls(work, outputs.resolve(), *subfolders, work / "jobs.json")

    def roots(self) -> tuple[Path, Path]:
        """The folders a request may name paths in."""
        return self.work, self.outputs

    def check(self, path: str | Path) -> Path:
        """`path` resolved, when it lies inside the work or the output folder; else BadInput."""
        text = str(path).strip()
        if not text:
            raise BadInput("no clip chosen: upload one or choose one from the list")
        resolved = Path(text).expanduser().resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots()):
            raise BadInput(
                f"{text} is outside the work folder and the output folder; the page only "
                "reads and writes inside them"
            )
        return resolved

    def job_folder(self, job_id: str) -> Path:
        """The folder of the job `job_id` (made, checked inside the work folder)."""
        folder = self.check(self.job_files / job_id)
        if folder.parent != self.job_files:
            raise BadInput(f"{job_id!r} is not a job id")
        folder.mkdir(exist_ok=True)
        return folder

    def clip(self, path: str | Path) -> Path:
        """A checked path to an existing video file."""
        resolved = self.check(path)
        if not resolved.is_file():
            raise BadInput(f"{resolved.name}: no such clip")
        if resolved.suffix.lower() not in VIDEO_SUFFIXES:
            raise BadInput(f"{resolved.name}: not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return resolved

    def keep_upload(self, uploaded: str | Path) -> Path:
        """Move a file Gradio received into the clips folder (a free name kept)."""
        source = self.check(uploaded)
        target = free_name(self.clips / Path(source).name)
        shutil.move(source, target)
        return target

    def choices(self) -> list[str]:
        """Clips a user may choose: the uploads, then the refined outputs (newest first)."""
        found = [
            p
            for folder in (self.clips, self.outputs)
            for p in folder.glob("*")
            if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
        ]
        return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def free_name(path: Path, taken: Collection[str] = ()) -> Path:
    """`path`, or `stem-2.ext`, `stem-3.ext`, ... when it exists or is in `taken` (promised to a
    queued job).
    """
    candidate, number = path, 1
    while candidate.exists() or str(candidate) in taken:
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


__all__ = ["VIDEO_SUFFIXES", "Folders", "free_name"]
