"""A training data folder -> clips with captions -> windows (docs/training.md "Data").

Two layouts: clips and images with same-name captions (`clip.txt`, or the `clip.captions.srt`
that `vidrefine caption` writes), or a `metadata.jsonl` whose lines are
`{"video": ..., "caption": ..., "lr_video": ..., "start": ..., "end": ...}` (paths relative to
the folder, times in seconds) for real low-res/high-res pairs. Images are one-frame clips.
Clips are cut into windows of the model's frame grid (1 + 4k frames) inside each shot, so no
window crosses a hard cut. Everything is checked here, before any model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vidrefine.captions import (
    SIDECAR_SUFFIX,
    CaptionCue,
    caption_for,
    check_cues,
    read_captions,
    read_text_file,
)
from vidrefine.errors import BadInput
from vidrefine.io.probe import MediaInfo, probe
from vidrefine.plan.shots import plan_shots

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
METADATA = "metadata.jsonl"
FALLBACK_FPS = 25.0  # a clip whose probe found no frame rate
CUT_THRESHOLD = 3.0  # PySceneDetect's adaptive ratio, as `upscale --cut-threshold` defaults


@dataclass(frozen=True)
class Clip:
    """One clip (or image) of the data set and what it is trained with."""

    path: Path
    info: MediaInfo
    caption: str = ""  # the whole clip's caption (a .txt or metadata.jsonl)
    cues: tuple[CaptionCue, ...] = ()  # or one caption per stretch (.captions.srt)
    lr_path: Path | None = None  # the real low-res copy, frame for frame
    start_frame: int = 0
    end_frame: int | None = None  # exclusive; None: the clip's end

    @property
    def is_image(self) -> bool:
        """True for a still picture: one window of one frame."""
        return self.path.suffix.lower() in IMAGE_SUFFIXES

    @property
    def fps(self) -> float:
        """Frames per second (the fallback when the file does not say)."""
        return float(self.info.fps) if self.info.fps else FALLBACK_FPS

    def caption_of(self, start_frame: int, end_frame: int) -> str:
        """The caption of frames [start_frame, end_frame): the cue covering most of them."""
        if not self.cues:
            return self.caption
        return caption_for(self.cues, start_frame / self.fps, end_frame / self.fps)


@dataclass(frozen=True)
class Window:
    """Frames [start_frame, start_frame + frames) of a clip, inside one shot, and its caption."""

    clip: Clip = field(repr=False)
    start_frame: int
    frames: int
    caption: str

    @property
    def name(self) -> str:
        """How messages name it: 'clip.mp4 frames 49-97'."""
        return f"{self.clip.path.name} frames {self.start_frame}-{self.start_frame + self.frames}"


def check_frames(frames: int) -> int:
    """Refuse a window length off the model's grid (1 + 4k frames: 1, 5, 9, ..., 49)."""
    if frames < 1 or (frames - 1) % 4:
        raise BadInput(f"--frames {frames}: a window is 1 + 4k frames (1, 5, 9, ..., 49)")
    return frames


def _media(folder: Path) -> list[Path]:
    suffixes = VIDEO_SUFFIXES + IMAGE_SUFFIXES
    found = [p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.parts))


def _stem(path: Path) -> Path:
    """`a/clip.captions.srt` and `a/clip.txt` -> `a/clip` (what the media file is named after)."""
    name = path.name
    if name.lower().endswith(SIDECAR_SUFFIX):
        return path.with_name(name[: -len(SIDECAR_SUFFIX)])
    return path.with_suffix("")


def _captions(folder: Path, media: list[Path]) -> dict[Path, Path]:
    """The caption file of each media stem; a caption file without its clip is an error."""
    stems = {path.with_suffix("") for path in media}
    found: dict[Path, Path] = {}
    texts = [p for p in folder.rglob("*") if p.name.lower().endswith((".txt", SIDECAR_SUFFIX))]
    for path in sorted(texts):
        if any(part.startswith(".") for part in path.parts):
            continue
        stem = _stem(path)
        if stem not in stems:
            raise BadInput(
                f"{path}: a caption file for another clip (no {stem.name}.mp4 or other clip or "
                f"image named {stem.name} beside it); rename or remove it"
            )
        if stem in found:
            raise BadInput(f"{stem.name}: two caption files ({found[stem].name}, {path.name})")
        found[stem] = path
    return found


def _clip_with_caption(path: Path, caption_file: Path | None) -> Clip:
    info = probe(path)
    if caption_file is None:
        raise BadInput(
            f"{path}: no caption; write {path.with_suffix('.txt').name} or "
            f"{path.stem}{SIDECAR_SUFFIX} (vidrefine caption writes one)"
        )
    if caption_file.name.lower().endswith(SIDECAR_SUFFIX):
        cues = read_captions(caption_file)
        fps = float(info.fps) if info.fps else FALLBACK_FPS
        check_cues(cues, info.frame_count / fps, str(caption_file), 1 / fps)
        return Clip(path, info, cues=cues)
    caption = " ".join(read_text_file(caption_file, "caption file").split())
    return Clip(path, info, caption=caption)


def _metadata_clip(folder: Path, number: int, entry: object) -> Clip:
    where = f"{folder / METADATA}: line {number}"
    if not isinstance(entry, dict) or not isinstance(entry.get("video"), str):
        raise BadInput(f'{where}: expected {{"video": "...", "caption": "..."}}')
    unknown = sorted(set(entry) - {"video", "caption", "lr_video", "start", "end"})
    if unknown:
        raise BadInput(f"{where}: unknown keys {', '.join(unknown)}")
    path = folder / entry["video"]
    if not path.is_file():
        raise BadInput(f"{where}: {entry['video']} is not a file in {folder}")
    info = probe(path)
    lr_path = folder / entry["lr_video"] if entry.get("lr_video") else None
    if lr_path is not None:
        _check_pair(path, info, lr_path, where)
    fps = float(info.fps) if info.fps else FALLBACK_FPS
    start = round(float(entry.get("start", 0.0)) * fps)
    end = round(float(entry["end"]) * fps) if "end" in entry else None
    caption = " ".join(str(entry.get("caption", "")).split())
    if not caption:
        raise BadInput(f"{where}: no caption for {entry['video']}")
    return Clip(path, info, caption, lr_path=lr_path, start_frame=start, end_frame=end)


def _check_pair(path: Path, info: MediaInfo, lr_path: Path, where: str) -> None:
    if not lr_path.is_file():
        raise BadInput(f"{where}: lr_video {lr_path.name} is not a file")
    lr = probe(lr_path)
    if lr.frame_count < info.frame_count:
        raise BadInput(
            f"{where}: {lr_path.name} has {lr.frame_count} frames, {path.name} has "
            f"{info.frame_count}; a pair is the same frames at two sizes"
        )


def _read_metadata(folder: Path) -> list[Clip]:
    lines = read_text_file(folder / METADATA, "metadata file").splitlines()
    clips = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{folder / METADATA}: line {number}: not JSON ({exc.msg})") from exc
        clips.append(_metadata_clip(folder, number, entry))
    return clips


def find_clips(folder: str | Path) -> list[Clip]:
    """Every clip of the data folder with its caption; BadInput for anything unusable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder}: not a folder of clips")
    if (folder / METADATA).is_file():
        clips = _read_metadata(folder)
    else:
        media = _media(folder)
        captions = _captions(folder, media)
        clips = [_clip_with_caption(p, captions.get(p.with_suffix(""))) for p in media]
    if not clips:
        raise BadInput(
            f"{folder}: no clips or images (with .txt or {SIDECAR_SUFFIX} captions, or a "
            f"{METADATA}) to train on"
        )
    return clips


def clip_cuts(clip: Clip, shots: bool, threshold: float = CUT_THRESHOLD) -> tuple[int, ...]:
    """Frames where a shot starts (hard cuts, PySceneDetect), none for images or shots off."""
    if not shots or clip.is_image or clip.info.frame_count < 2:
        return ()
    from vidrefine.io.shots import detect_cuts  # PySceneDetect: only when shots are on

    return detect_cuts(clip.path, clip.info, threshold=threshold, min_shot_frames=1)


def clip_windows(clip: Clip, frames: int, cuts: tuple[int, ...]) -> list[Window]:
    """Back-to-back windows of `frames` frames inside each shot; an image is one 1-frame window.

    Raises:
        BadInput: no shot of the clip (between its start and end) holds one window.
    """
    if clip.is_image:
        return [Window(clip, 0, 1, clip.caption_of(0, 1))]
    end = min(clip.end_frame or clip.info.frame_count, clip.info.frame_count)
    windows = []
    for shot in plan_shots(cuts, clip.info.frame_count, clip.info.fps, min_frames=1):
        start = max(shot.start_frame, clip.start_frame)
        while start + frames <= min(shot.end_frame, end):
            windows.append(Window(clip, start, frames, clip.caption_of(start, start + frames)))
            start += frames
    if not windows:
        longest = "" if not cuts else " (its longest shot without a cut is shorter)"
        raise BadInput(
            f"{clip.path}: {end - clip.start_frame} frames, shorter than one window of "
            f"{frames}{longest}; lower --frames or leave the clip out"
        )
    return windows


def plan_windows(clips: list[Clip], frames: int, *, shots: bool = True) -> Iterator[Window]:
    """Every window of every clip, clip by clip (shot detection reads each clip once)."""
    check_frames(frames)
    for clip in clips:
        yield from clip_windows(clip, frames, clip_cuts(clip, shots))
