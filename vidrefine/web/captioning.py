"""The caption box: one caption, or a captions file's SRT text (one caption per shot).

The box is prefilled from the clip's captions file (`clip.captions.srt`, as `vidrefine upscale`
reads it), else from its sidecar caption (`clip.txt`). Text holding an SRT time range (`-->`)
is read as a captions file: a job saves it in its folder and refines each shot with its own
caption, as `upscale` does with the file; a preview takes the caption of the cue at its time.
"""

from __future__ import annotations

from pathlib import Path

from vidrefine.captions import (
    Captions,
    caption_for,
    parse_srt,
    sidecar_captions,
)
from vidrefine.errors import BadInput

BOX = "the caption box"  # how messages name the box's captions
SRT_MARK = "-->"  # an SRT time range: the box holds a captions file
CAPTIONS_FILE = "captions.srt"  # the captions file in a job's folder
AT_SPAN_S = 1e-3  # a preview's caption is the cue covering its start


def _text(path: Path) -> str:
    """The UTF-8 text of `path`, or '' when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def prefilled_caption(clip: Path) -> str:
    """What the box shows for `clip`: its captions file's SRT text, else its sidecar caption
    (`clip.txt`, one paragraph), else ''.
    """
    srt = _text(sidecar_captions(clip)).strip()
    return srt if srt else " ".join(_text(clip.with_suffix(".txt")).split())


def require_caption(caption: str | None) -> str:
    """The caption with its whitespace collapsed; BadInput when there is none."""
    text = " ".join((caption or "").split())
    if not text:
        raise BadInput(
            "no caption: describe the clip in the caption box (the model was trained on long, "
            "detailed descriptions)"
        )
    return text


def box_captions(text: str | None) -> tuple[str, Captions | None]:
    """(caption, captions) of the box: one caption and None, or the first caption of the SRT
    text and its cues.

    Raises:
        BadInput: no caption, malformed SRT, or SRT without any caption.
    """
    if SRT_MARK not in (text or ""):
        return require_caption(text), None
    captions = Captions(BOX, parse_srt(text or "", BOX))
    if not captions.default:
        raise BadInput(f"{BOX}: the captions hold no caption (expected SRT cues)")
    return captions.default, captions


def caption_at(text: str | None, at_s: float) -> str:
    """The caption a preview at `at_s` uses: the box's caption, or its cue covering `at_s`."""
    caption, captions = box_captions(text)
    if captions is None:
        return caption
    return caption_for(captions.cues, at_s, at_s + AT_SPAN_S, caption)


__all__ = [
    "CAPTIONS_FILE",
    "box_captions",
    "caption_at",
    "prefilled_caption",
    "require_caption",
]
