"""Captioner plugins: the protocol, discovery by entry point, and captioning a clip shot by shot.

A captioner turns a few frames of one shot into a paragraph that stage II can be conditioned on.
Captioners are found only through the entry-point group `vidrefine.captioners`, the bundled
Qwen3-VL one included (`qwen3vl.py`), so a user can plug in another model or a hosted service.
vidrefine samples the frames, trims the text to the 226 T5 tokens stage II reads and writes the
captions file (`vidrefine.captions`); a plugin only looks and describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vidrefine.plugins import PluginEntry, check_members, create_plugin, discover_plugins

if TYPE_CHECKING:  # kept out of the import so that `vidrefine caption --help` starts fast
    import numpy as np
    import torch

CAPTIONER_GROUP = "vidrefine.captioners"
CAPTIONER_API_VERSION = 1
DEFAULT_CAPTIONER = "qwen3-vl-2b"


@runtime_checkable
class Captioner(Protocol):
    """What a captioner plugin provides (captioner API version 1).

    vidrefine reads the attributes, resolves `required_weights` (fetching them like its own),
    calls `load(...)` once, `caption(...)` once per shot, `describe()` for the record, and
    `release()` before stage II loads.

    Attributes:
        api_version: the protocol version the plugin was written for (1).
        name: short name, the one `--captioner` selects.
        required_weights: keys of vidrefine's weights table
            (`vidrefine.checkpoints.weights.BY_KEY`) that `load` needs; () for none.
        frame_rate: frames per second to sample from a shot (the model's preferred rate).
        max_frames: the most frames handed over for one shot (a long shot is sampled sparser).
        memory_gb: device memory while captioning (weights and working memory), which the
            memory plan counts as the "captioner" phase; 0 for a hosted service.
    """

    api_version: int
    name: str
    required_weights: tuple[str, ...]
    frame_rate: float
    max_frames: int
    memory_gb: float

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable facts about the model and its settings (name, source, licence)."""

    def load(self, paths: Mapping[str, Path], *, device: torch.device, dtype: str) -> None:
        """Load the model from `paths` ({weights key: resolved path}) onto `device` in `dtype`
        ("bf16", "fp16" or "fp32").
        """

    def caption(self, frames: np.ndarray, fps: float, *, max_tokens: int) -> str:
        """One paragraph describing `frames`, (T, H, W, 3) uint8 sampled `fps` per second from
        one shot; at most `max_tokens` of the model's own tokens.
        """

    def release(self) -> None:
        """Free the model (device memory included)."""


CAPTIONER_ATTRIBUTES = (
    "api_version",
    "name",
    "required_weights",
    "frame_rate",
    "max_frames",
    "memory_gb",
)
CAPTIONER_METHODS = ("describe", "load", "caption", "release")


def check_captioner(name: str, obj: object) -> str | None:
    """None when `obj` (a captioner or its class) satisfies the protocol, else a one-line reason
    (the version first, then missing members).
    """
    return check_members(
        "captioner",
        name,
        obj,
        version=("captioner API", CAPTIONER_API_VERSION),
        attributes=CAPTIONER_ATTRIBUTES,
        methods=CAPTIONER_METHODS,
    )


def discover_captioners() -> dict[str, PluginEntry]:
    """Every registered captioner by name (the first registration of a name wins); a broken
    one is kept with its error.
    """
    return discover_plugins(CAPTIONER_GROUP, "captioner", check_captioner)


def create_captioner(name: str = DEFAULT_CAPTIONER) -> Captioner:
    """The captioner registered as `name`, created; an unknown or broken one is a one-line error."""
    entries = discover_captioners()
    return create_plugin(name, entries, CAPTIONER_GROUP, "captioner", check_captioner)


def __getattr__(name: str) -> Any:
    """`caption_clip` and `caption_files` load the frame reader and torch only when used."""
    if name in ("caption_clip", "caption_files", "CaptionSession"):
        from vidrefine.captioners import clip

        return getattr(clip, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CAPTIONER_API_VERSION",
    "CAPTIONER_ATTRIBUTES",
    "CAPTIONER_GROUP",
    "CAPTIONER_METHODS",
    "DEFAULT_CAPTIONER",
    "CaptionSession",
    "Captioner",
    "caption_clip",
    "caption_files",
    "check_captioner",
    "create_captioner",
    "discover_captioners",
]
