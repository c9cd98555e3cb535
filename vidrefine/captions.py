"""Captions files: one caption per stretch of a clip, stored as SRT beside the clip.

The format is plain SubRip (SRT), which every subtitle editor opens and anyone can edit by
hand: numbered cues, each a time range `HH:MM:SS,mmm --> HH:MM:SS,mmm` and its text. For
vidrefine a cue's text is one caption paragraph; line breaks inside a cue are joined with
spaces. The sidecar of `clip.mp4` is `clip.captions.srt` (not `clip.srt`, which may hold real
subtitles). Standard library only, so the CLI and every layer can read one cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidrefine.errors import BadInput
from vidrefine.io.atomic import atomic_output

SIDECAR_SUFFIX = ".captions.srt"
_TIME = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")
DEFAULT_FRAME_S = 1 / 8  # the slack when a clip's frame rate is unknown (stage II runs at 8 fps)
# Captions, caption and prompt files are text: 8 MiB holds some 10,000 long captions.
MAX_TEXT_BYTES = 8 * 1024**2
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # tab, line and page breaks are text


@dataclass(frozen=True)
class CaptionCue:
    """One caption and the stretch of the clip, in seconds, it describes (end exclusive)."""

    start_s: float
    end_s: float
    text: str

    def covered(self, start_s: float, end_s: float) -> float:
        """Seconds of [start_s, end_s) that this cue covers."""
        return max(0.0, min(self.end_s, end_s) - max(self.start_s, start_s))


@dataclass(frozen=True)
class Captions:
    """The cues of one captions file and where they came from (named in messages)."""

    source: str
    cues: tuple[CaptionCue, ...]

    @property
    def default(self) -> str:
        """The first non-empty caption: what a stretch no cue covers falls back to."""
        return next((cue.text for cue in self.cues if cue.text.strip()), "")


def sidecar_captions(clip: Path) -> Path:
    """The captions file read for `clip` when none is named: `clip.mp4` -> `clip.captions.srt`."""
    clip = Path(clip)
    return clip.with_name(clip.stem + SIDECAR_SUFFIX)


def captions_for_clip(clip: Path, given: Path | None) -> Captions | None:
    """The captions file of `clip`, read: `given` (a file, or a folder holding
    `<stem>.captions.srt`), else the sidecar `clip.captions.srt`; None when there is none.

    Raises:
        BadInput: the named file is missing, unreadable or malformed.
    """
    clip = Path(clip)
    if given is not None and not given.is_dir():
        return load_captions(given)
    candidates = [sidecar_captions(clip)]
    if given is not None:
        candidates.insert(0, given / sidecar_captions(clip).name)
    found = next((path for path in candidates if path.is_file()), None)
    return None if found is None else load_captions(found)


def _seconds(hours: str, minutes: str, seconds: str, millis: str) -> float:
    """Seconds from the four fields of an SRT time (milliseconds padded: `,5` is 500 ms)."""
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _timestamp(seconds: float) -> str:
    """`HH:MM:SS,mmm` for a time in seconds, rounded to the millisecond."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d},{rest % 1000:03d}"


def _blocks(text: str) -> list[list[tuple[int, str]]]:
    """The cues of an SRT text as lists of (line number, line) of non-blank lines, split at
    blank lines.
    """
    blocks: list[list[tuple[int, str]]] = [[]]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").split("\n")
    for number, line in enumerate(lines, start=1):
        if line.strip():
            blocks[-1].append((number, line.strip()))
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _parse_block(block: list[tuple[int, str]], number: int, source: str) -> CaptionCue:
    """One cue from its lines: an optional index line, the timing line, then the text.

    A time range among the text lines is an error, not a new cue: it means the blank line
    that ends a cue is missing, and guessing where the next cue starts would put its index
    number (or a caption line) into the wrong caption.
    """
    lines = block[1:] if block[0][1].isdigit() and len(block) > 1 else block
    timing = _TIMING.match(lines[0][1])
    if timing is None:
        raise BadInput(
            f"{source}: cue {number}: expected a time range such as "
            f"'00:00:01,000 --> 00:00:04,500', got {lines[0][1][:60]!r}"
        )
    fields = timing.groups()
    start, end = _seconds(*fields[:4]), _seconds(*fields[4:])
    if end <= start:
        raise BadInput(
            f"{source}: cue {number} ends at {end:.3f} s, not after its start {start:.3f} s"
        )
    for line_number, line in lines[1:]:
        if _TIMING.match(line):
            raise BadInput(
                f"{source}: line {line_number}: a time range inside the text of cue {number}; "
                "end each cue with a blank line"
            )
    return CaptionCue(start, end, " ".join(line for _, line in lines[1:]))


def parse_srt(text: str, source: str) -> tuple[CaptionCue, ...]:
    """The cues of an SRT text in file order; `source` names the file in error messages.

    Raises:
        BadInput: a cue without a valid time range, or one that ends before it starts.
    """
    return tuple(_parse_block(b, n, source) for n, b in enumerate(_blocks(text), start=1))


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a small text file: a captions, caption or prompt file (`what`).

    Any readable file that is not a folder is read (`<(...)` pipes too), but never more than
    `MAX_TEXT_BYTES`: `/dev/zero` or a video given by mistake is refused, not read whole.

    Raises:
        BadInput: missing, a folder, unreadable, larger than the limit, or not text (not
            UTF-8, or holding NUL or other control bytes).
    """
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{what} {path} is a folder, not a file")
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_TEXT_BYTES + 1)
    except FileNotFoundError:
        raise BadInput(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise BadInput(
            f"{what} {path} is larger than {MAX_TEXT_BYTES // 1024**2} MiB: not a {what}? "
            "(captions and prompts are text of a few KB)"
        )
    return _decoded(data, path, what)


def _decoded(data: bytes, path: Path, what: str) -> str:
    """`data` as text; BadInput naming the first byte that is not text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what} {path} is not text (not UTF-8 at byte {exc.start})") from None
    control = _CONTROL.search(text)
    if control is not None:
        where = len(text[: control.start()].encode("utf-8"))
        raise BadInput(
            f"{what} {path} is not text (control byte {ord(control.group()):#04x} at byte {where})"
        )
    return text


def read_captions(path: Path) -> tuple[CaptionCue, ...]:
    """The cues of a captions file (UTF-8 SRT).

    Raises:
        BadInput: the file is missing, unreadable, not UTF-8 text, too large, or malformed.
    """
    return parse_srt(read_text_file(path, "captions file"), str(path))


def load_captions(path: Path) -> Captions:
    """A captions file read, with at least one non-empty caption.

    Raises:
        BadInput: the file cannot be read, is malformed, or holds no caption at all.
    """
    cues = read_captions(path)
    if not any(cue.text.strip() for cue in cues):
        raise BadInput(f"{path}: the captions file holds no caption (expected SRT cues)")
    return Captions(str(path), cues)


def format_srt(cues: Iterable[CaptionCue]) -> str:
    """SRT text for `cues`, numbered from 1, each caption on one line."""
    parts = []
    for number, cue in enumerate(cues, start=1):
        caption = " ".join(cue.text.split())
        parts.append(
            f"{number}\n{_timestamp(cue.start_s)} --> {_timestamp(cue.end_s)}\n{caption}\n"
        )
    return "\n".join(parts)


def write_captions(path: Path, cues: Iterable[CaptionCue]) -> None:
    """Write `cues` to `path` as SRT, atomically: a temporary file in the folder, then a rename."""
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(format_srt(cues), encoding="utf-8", newline="\n")


def check_cues(
    cues: Sequence[CaptionCue], duration_s: float, source: str, frame_s: float = DEFAULT_FRAME_S
) -> list[str]:
    """Validate cues against a clip `duration_s` long; returns warnings (gaps, empty captions).

    Cues must be in time order and must not overlap; none may end past the clip's end by more
    than a frame (`frame_s`), which usually means the file belongs to another clip.

    Raises:
        BadInput: overlapping cues, or a cue past the end of the clip.
    """
    warnings = []
    previous_end = 0.0
    for number, cue in enumerate(cues, start=1):
        if cue.end_s > duration_s + frame_s:
            raise BadInput(
                f"{source}: captions file is for another clip? cue {number} ends at "
                f"{cue.end_s:.3f} s, the clip is {duration_s:.3f} s"
            )
        if number > 1 and cue.start_s < previous_end - 1e-6:
            raise BadInput(
                f"{source}: cue {number} starts at {cue.start_s:.3f} s, before cue {number - 1} "
                f"ends ({previous_end:.3f} s); cues must not overlap"
            )
        if cue.start_s - previous_end > frame_s:
            warnings.append(
                f"{source}: no caption from {previous_end:.3f} s to {cue.start_s:.3f} s "
                "(that stretch uses the neighbouring cue's caption)"
            )
        if not cue.text.strip():
            warnings.append(f"{source}: cue {number} has an empty caption")
        previous_end = cue.end_s
    if cues and duration_s - previous_end > frame_s:
        warnings.append(
            f"{source}: no caption from {previous_end:.3f} s to the end ({duration_s:.3f} s) "
            "(that stretch uses the last cue's caption)"
        )
    return warnings


def _distance(cue: CaptionCue, start_s: float, end_s: float) -> float:
    """Seconds between `cue` and the range [start_s, end_s) (0 when they touch or overlap)."""
    return max(0.0, cue.start_s - end_s, start_s - cue.end_s)


def caption_for(cues: Sequence[CaptionCue], start_s: float, end_s: float, default: str = "") -> str:
    """The caption of the cue covering most of [start_s, end_s) (a shot).

    That cue's caption, or `default` when it is empty. A range no cue covers (a gap between
    cues, a shot past the last cue) takes the nearest non-empty cue's caption, or `default`.
    """
    if cues:
        best = max(cues, key=lambda cue: cue.covered(start_s, end_s))
        if best.covered(start_s, end_s) > 0:
            return best.text.strip() or default
    texted = [cue for cue in cues if cue.text.strip()]
    if not texted:
        return default
    return min(texted, key=lambda cue: _distance(cue, start_s, end_s)).text.strip()


def captions_for_shots(
    cues: Sequence[CaptionCue], shots: Iterable[tuple[float, float]], default: str
) -> tuple[str, ...]:
    """`caption_for` each (start_s, end_s) shot, in order."""
    return tuple(caption_for(cues, start, end, default) for start, end in shots)
