"""The two folders the page may touch, and the check every path from a request goes through.

Uploads land in a private work folder (made with mode 0700; an existing one keeps its mode);
refined clips go to the output folder. A path that resolves (links followed) outside both is
refused with one line, whatever the request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from vidrefine.errors import BadInput, OutputNotWritable

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
SUBFOLDERS = ("clips", "previews", "t2v", "gradio", "jobs")


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
    def at(cls, work: Path, outputs: Path) -> Folders:
        """The folders of `work` and `outputs`, resolved; nothing is made."""
        work = work.expanduser().resolve()
        subfolders = [work / name for name in SUBFOLDERS]
        return cls(work, outputs.expanduser().resolve(), *subfolders, work / "jobs.json")

    @classmethod
    def create(cls, work: Path, outputs: Path) -> Folders:
        """`at` with every folder made (`make`)."""
        folders = cls.at(work, outputs)
        folders.make()
        return folders

    def make_work(self) -> list[Path]:
        """Make the work folder (private: 0700) if it is missing; the folders made, outermost
        first. A folder that exists keeps its mode, whoever made it.
        """
        return make_folders(self.work, private=True)

    def make(self) -> list[Path]:
        """Make every folder that is missing (the work folder's private); the ones made."""
        made = [*self.make_work(), *make_folders(self.outputs, private=False)]
        subfolders = (self.clips, self.previews, self.t2v, self.gradio_cache, self.job_files)
        return made + [p for p in subfolders if make_folder(p, private=True)]

    def readable_by_others(self) -> bool:
        """Whether users other than the owner may list the work folder."""
        return bool(self.work.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))

    def written_here(self) -> list[Path]:
        """The folders where the page writes files through temporary names."""
        return [self.work, self.clips, self.previews, self.outputs]

    def roots(self) -> tuple[Path, Path]:
        """The folders a request may name paths in."""
        return self.work, self.outputs

    def check(self, path: str | Path) -> Path:
        """`path` resolved, when it lies inside the work or the output folder; else BadInput."""
        text = str(path).strip()
        if not text:
            raise BadInput("no clip chosen: upload one or choose one from the list")
        if "\x00" in text:
            raise BadInput(
                f"{text!r} holds a NUL byte, which no file name can; the path is refused"
            )
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

    def keep_upload(self, uploaded: str | Path, accept: Callable[[Path], object]) -> Path:
        """Move a file Gradio received into the clips folder (a free name kept), once
        `accept(path)` took it (it raises for a file that is no video); a refused upload is
        removed, with the folder Gradio made for it.
        """
        source = self.check(uploaded)
        try:
            if source.suffix.lower() not in VIDEO_SUFFIXES:
                raise BadInput(f"{source.name}: not a video file ({', '.join(VIDEO_SUFFIXES)})")
            accept(source)
            target = free_name(self.clips / source.name)
            shutil.move(source, target)
        except BaseException:
            if source.is_relative_to(self.gradio_cache):
                source.unlink(missing_ok=True)
            raise
        finally:
            self._drop_empty_cache_folder(source.parent)
        return target

    def _drop_empty_cache_folder(self, folder: Path) -> None:
        """Remove the (now empty) folder Gradio stored one upload in."""
        if folder.parent == self.gradio_cache:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def choices(self) -> list[str]:
        """Clips a user may choose: the uploads, then the refined outputs (newest first)."""
        found = [
            p
            for folder in (self.clips, self.outputs)
            for p in folder.glob("*")
            if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
        ]
        return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def make_folders(folder: Path, *, private: bool) -> list[Path]:
    """Make `folder` and its missing parents (only `folder` itself `private`); those made,
    outermost first.
    """
    missing = [folder, *(p for p in folder.parents if not p.exists())][::-1]
    return [p for p in missing if make_folder(p, private=private and p == folder)]


def make_folder(folder: Path, *, private: bool) -> bool:
    """Make `folder` (0700 when `private`); whether this call made it."""
    try:
        folder.mkdir(mode=0o700 if private else 0o777)
    except FileExistsError:
        return False
    except OSError as exc:
        raise OutputNotWritable(
            f"cannot make the folder {folder} ({exc.strerror}); give another --work or -o"
        ) from None
    if private:
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask; ours alone counts
    return True


def free_name(path: Path, taken: Collection[str] = ()) -> Path:
    """`path`, or `stem-2.ext`, `stem-3.ext`, ... when it exists or is in `taken` (promised to a
    queued job).
    """
    candidate, number = path, 1
    while candidate.exists() or str(candidate) in taken:
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


__all__ = ["VIDEO_SUFFIXES", "Folders", "free_name", "make_folder", "make_folders"]
