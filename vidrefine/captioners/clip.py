"""Captioning clips shot by shot: sample each shot's frames in one streaming read, ask the
captioner, tidy and trim the answer to the 226 T5 tokens stage II reads, and write the captions
file. A `CaptionSession` loads the captioner once for a batch and releases it before stage II.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vidrefine.captioners import DEFAULT_CAPTIONER, Captioner, create_captioner
from vidrefine.captioners.trim import one_paragraph, t5_token_counter, trim_to_tokens
from vidrefine.captions import SIDECAR_SUFFIX, CaptionCue, sidecar_captions, write_captions
from vidrefine.config import resolve_precision
from vidrefine.errors import BadInput, OutputExists
from vidrefine.io.atomic import check_distinct_outputs, check_output_place
from vidrefine.io.probe import MediaInfo, probe
from vidrefine.io.reader import read_chunks
from vidrefine.progress import NullProgress, Progress

MAX_NEW_TOKENS = 320  # the model's tokens: more than 226 T5 tokens of English, then trimmed
READ_CHUNK_FRAMES = 16


class ShotSpan(Protocol):
    """A stretch of a clip, as `vidrefine.plan.shots.Shot` gives it (end frame exclusive)."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class WholeClip:
    """The one "shot" of a clip captioned without shot detection."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float


def whole_clip(info: MediaInfo) -> WholeClip:
    """The whole of `info`'s clip as one shot."""
    duration = info.duration_s or info.frame_count / float(info.fps)
    return WholeClip(0, info.frame_count, 0.0, duration)


def sample_indices(start: int, end: int, fps: float, rate: float, max_frames: int) -> list[int]:
    """Frames [start, end) sampled `rate` per second (2 at least, `max_frames` at most), spread
    evenly from the first frame to the last.
    """
    length = end - start
    wanted = min(max(2, round(length / fps * rate)), max_frames, length)
    spread = np.linspace(start, end - 1, max(wanted, 1)).round().astype(int)
    return sorted({int(i) for i in spread})


def sampled_rate(indices: Sequence[int], fps: float, rate: float) -> float:
    """Frames per second of the sampled sequence (`rate` for a single frame)."""
    if len(indices) < 2:
        return rate
    return (len(indices) - 1) * fps / (indices[-1] - indices[0])


def shot_frames(
    path: Path, info: MediaInfo, plan: Sequence[list[int]]
) -> Iterator[tuple[int, np.ndarray]]:
    """(shot number, its sampled frames (T, H, W, 3) uint8) in order, from one streaming read;
    only the current shot's frames are held.
    """
    owner = {index: number for number, indices in enumerate(plan) for index in indices}
    current, held = -1, []
    with read_chunks(path, READ_CHUNK_FRAMES, info=info) as reader:
        for chunk in reader:
            for offset, frame in enumerate(chunk.frames):
                number = owner.get(chunk.start_index + offset)
                if number is None:
                    continue
                if number != current and held:
                    yield current, np.stack(held)
                    held = []
                current = number
                held.append(frame.copy())
    if held:  # the last shot, or one cut short by a clip shorter than its header said
        yield current, np.stack(held)


class CaptionSession:
    """A loaded captioner and the T5 tokenizer its captions are trimmed with; `close()` (or
    `contextlib.closing`) releases the captioner.
    """

    def __init__(
        self,
        captioner: Captioner,
        count_tokens: Callable[[str], int],
        *,
        progress: Progress | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> None:
        """Wrap a captioner whose `load` was called; prefer `open`."""
        self.captioner = captioner
        self.count_tokens = count_tokens
        self.progress = progress or NullProgress()
        self.max_new_tokens = max_new_tokens

    @classmethod
    def open(
        cls,
        name: str = DEFAULT_CAPTIONER,
        *,
        weights_dir: Path | None = None,
        offline: bool = False,
        device: torch.device | None = None,
        dtype: str = "auto",
        fits: Callable[[Captioner], object] | None = None,
        announce: Callable[[str], None] | None = None,
        progress: Progress | None = None,
    ) -> CaptionSession:
        """Create the captioner `name`, find (or fetch) its weights and the T5 folder, load it.

        `fits(captioner)` runs before any weight is looked up (the memory plan's check raises
        DoesNotFit). Offline without the weights: `MissingWeights` naming them and the
        `vidrefine download` command.
        """
        from vidrefine.checkpoints.weights import BY_KEY, T5, resolve
        from vidrefine.runtime.device import pick_device

        captioner = create_captioner(name)
        if fits is not None:
            fits(captioner)
        wanted = [BY_KEY[key] for key in captioner.required_weights] + [T5]
        paths = resolve(wanted, weights_dir=weights_dir, offline=offline, announce=announce)
        device = device or pick_device()
        dtype = resolve_precision(dtype, device.type)
        found = {key: paths[BY_KEY[key].name] for key in captioner.required_weights}
        count = t5_token_counter(paths[T5.name])
        captioner.load(found, device=device, dtype=dtype)
        return cls(captioner, count, progress=progress)

    def close(self) -> None:
        """Release the captioner (before stage II loads)."""
        self.captioner.release()

    def describe(self, frames: np.ndarray, fps: float) -> str:
        """One stage-II caption for a shot's sampled frames: one paragraph, trimmed to 226 T5
        tokens at a sentence (else word) boundary.
        """
        answer = self.captioner.caption(frames, fps, max_tokens=self.max_new_tokens)
        return trim_to_tokens(one_paragraph(answer), self.count_tokens)

    def caption_clip(
        self, path: Path, shots: Sequence[ShotSpan] | None = None, info: MediaInfo | None = None
    ) -> tuple[CaptionCue, ...]:
        """One cue per shot of `path` (`shots`; None: the whole clip as one shot); `info` is its
        probe when the caller has it.
        """
        info = info or probe(path)
        shots = list(shots) if shots else [whole_clip(info)]
        fps, rate = float(info.fps), self.captioner.frame_rate
        plan = [
            sample_indices(s.start_frame, s.end_frame, fps, rate, self.captioner.max_frames)
            for s in shots
        ]
        texts: dict[int, str] = {}
        with self.progress.task(f"captions {path.name}", total=len(shots), unit="shot") as bar:
            for number, frames in shot_frames(path, info, plan):
                texts[number] = self.describe(frames, sampled_rate(plan[number], fps, rate))
                bar.advance()
        return tuple(CaptionCue(s.start_s, s.end_s, texts.get(n, "")) for n, s in enumerate(shots))


def check_targets(pairs: Sequence[tuple[Path, Path]], *, overwrite: bool) -> None:
    """Refuse, before any clip is captioned, a (clip, captions file) pair that cannot be written.

    A captions file ends in .srt, is none of the clips, is written by one clip only, is not
    replaced without `overwrite`, and its folder (or the nearest that exists) is writable.
    """
    check_distinct_outputs(pairs)
    clips = [clip for clip, _ in pairs]
    for clip, target in pairs:
        if target.suffix.lower() != ".srt":
            raise BadInput(
                f"{target}: a captions file is SRT text and must end in .srt "
                f"(e.g. {clip.stem}{SIDECAR_SUFFIX})"
            )
        if target.exists() and not target.is_dir() and not overwrite:
            raise OutputExists(f"{target} exists (captions kept); pass --overwrite to replace it")
        check_output_place(target, inputs=clips, overwrite=overwrite)


def caption_files(
    session: CaptionSession,
    clips: Sequence[Path],
    *,
    shots_for: Callable[[MediaInfo], Sequence[ShotSpan] | None] = lambda _: None,
    output: Callable[[Path], Path] = sidecar_captions,
    overwrite: bool = False,
    on_write: Callable[[Path, tuple[CaptionCue, ...]], None] | None = None,
) -> list[tuple[Path, tuple[CaptionCue, ...]]]:
    """Caption each clip and write its captions file (the sidecar `clip.captions.srt` unless
    `output` says otherwise); an existing file is kept unless `overwrite` (checked for every
    clip before any is captioned). `shots_for(probe)` gives a clip's shots (None: one shot);
    `on_write(file, cues)` follows each file written. Returns (file, cues) per clip.
    """
    targets = [output(clip) for clip in clips]
    check_targets(list(zip(clips, targets, strict=True)), overwrite=overwrite)
    written = []
    for clip, target in zip(clips, targets, strict=True):
        info = probe(clip)
        cues = session.caption_clip(clip, shots_for(info), info)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_captions(target, cues)
        written.append((target, cues))
        if on_write is not None:
            on_write(target, cues)
    return written


def caption_clip(
    path: Path,
    *,
    shots: Sequence[ShotSpan] | None = None,
    info: MediaInfo | None = None,
    captioner: str = DEFAULT_CAPTIONER,
    **open_args: Any,
) -> tuple[CaptionCue, ...]:
    """Caption one clip with a captioner loaded for it alone (and released): the simple entry
    for callers such as a web UI's "auto" button. `info`: its probe, when the caller has it;
    `open_args` go to `CaptionSession.open`.
    """
    with closing(CaptionSession.open(captioner, **open_args)) as session:
        return session.caption_clip(Path(path), shots, info)
