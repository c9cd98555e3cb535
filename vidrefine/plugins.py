"""Text-to-video generator plugins: the versioned protocol and discovery by entry point.

A generator turns one caption embedding and a seed into a low-resolution clip that stage II then
refines. Generators are found only through the entry-point group `vidrefine.generators`; vidrefine
never imports one by name, the bundled FlashVideo stage I included (see generators/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vidrefine.errors import BadInput, VidrefineError

if TYPE_CHECKING:  # kept out of the import so that `t2v --list-generators` starts fast
    import numpy as np
    import torch

    from vidrefine.progress import Progress

GENERATOR_GROUP = "vidrefine.generators"
API_VERSION = 1  # bump when the protocol below changes incompatibly


@dataclass(frozen=True)
class GeneratedClip:
    """One generated clip, in both forms stage II and the preview writer need.

    Attributes:
        frames: (T, H, W, 3) float32 in [0, 255], NOT rounded: stage II starts from these, as
            the original does (flashvideo-spec §5.1, pitfall 18).
        preview: (T, H, W, 3) uint8, the same frames quantised for the preview file.
        fps: frame rate the preview is written at.
    """

    frames: np.ndarray
    preview: np.ndarray
    fps: Fraction


@runtime_checkable
class Generator(Protocol):
    """What a text-to-video generator plugin provides (API version 1).

    Attributes:
        api_version: the protocol version the plugin was written for (`API_VERSION`).
        name: short name shown by `vidrefine t2v --list-generators`.
        size_hw: native output size (height, width) in pixels.
        num_frames: frames per generated clip.
        fps: frame rate of the clip.
        required_weights: keys of vidrefine's weights table (`vidrefine.weights.BY_KEY`) that
            must be present before `load`; vidrefine fetches them like its own. () for none.

    Two optional methods are called when present: `configure(config: RunConfig)` before `load`
    (to read knobs such as `stage1_cfg_scale`), and `describe() -> dict` after generating (JSON
    settings and model files recorded in the run manifest).
    """

    api_version: int
    name: str
    size_hw: tuple[int, int]
    num_frames: int
    fps: Fraction
    required_weights: tuple[str, ...]

    def load(self, weights_dir: Path | None, *, device: torch.device, dtype: torch.dtype) -> None:
        """Load the weights onto `device`; `weights_dir` is the user's --weights folder or None."""

    def generate(
        self, prompt_embedding: torch.Tensor, seed: int, *, progress: Progress
    ) -> GeneratedClip:
        """Generate one clip from a (1, 226, 4096) T5 embedding; same seed, same clip."""

    def release(self) -> None:
        """Free the weights (device memory included) so that stage II has the device alone."""


@dataclass
class GeneratorEntry:
    """A discovered plugin: its entry point, and the error that made it unusable, if any."""

    name: str
    value: str  # "module:object" as registered
    package: str  # the distribution that registered it
    factory: Callable[[], Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the plugin imported and looks like a `Generator`."""
        return self.error is None


def check_generator(name: str, obj: object) -> str | None:
    """None when `obj` (a generator or its class) satisfies the protocol, else a one-line reason."""
    missing = [
        attr
        for attr in (
            "api_version",
            "name",
            "size_hw",
            "num_frames",
            "fps",
            "load",
            "generate",
            "release",
        )
        if not hasattr(obj, attr)
    ]
    if missing:
        return f"generator {name!r} lacks {', '.join(missing)}"
    version = obj.api_version  # type: ignore[attr-defined]
    if version != API_VERSION:
        return (
            f"generator {name!r} implements plugin API version {version}; this vidrefine "
            f"supports version {API_VERSION}"
        )
    return None


def _inspect(ep: EntryPoint) -> GeneratorEntry:
    package = ep.dist.name if ep.dist is not None else "?"
    entry = GeneratorEntry(ep.name, ep.value, package)
    try:
        factory = ep.load()
    except Exception as exc:  # a third-party import can fail in any way
        entry.error = f"generator {ep.name!r} ({ep.value}) cannot be imported: {exc!r}"
        return entry
    if not callable(factory):
        entry.error = f"generator {ep.name!r} ({ep.value}) is not a class or factory"
        return entry
    if isinstance(factory, type):  # a factory function is checked on what it returns
        entry.error = check_generator(ep.name, factory)
    entry.factory = factory
    return entry


def discover_generators(warn: Callable[[str], None] | None = None) -> dict[str, GeneratorEntry]:
    """Every registered generator by name; a broken one is kept with its error and warned about.

    The first registration of a name wins; a later one with the same name is reported.
    """
    found: dict[str, GeneratorEntry] = {}
    for ep in sorted(entry_points(group=GENERATOR_GROUP), key=lambda e: e.name):
        entry = _inspect(ep)
        if ep.name in found:
            if warn is not None:
                warn(f"generator {ep.name!r} is registered twice; using {found[ep.name].value}")
            continue
        if entry.error is not None and warn is not None:
            warn(entry.error)
        found[ep.name] = entry
    return found


def create_generator(name: str, *, entries: dict[str, GeneratorEntry] | None = None) -> Generator:
    """Instantiate the generator registered as `name`; a broken one raises its captured error."""
    entries = discover_generators() if entries is None else entries
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(sorted(entries)) or f"none (entry-point group {GENERATOR_GROUP})"
        raise BadInput(f"no generator named {name!r}; installed: {known}")
    if entry.error is not None or entry.factory is None:
        raise VidrefineError(entry.error or f"generator {name!r} is unusable")
    try:
        generator = entry.factory()
    except VidrefineError:
        raise
    except Exception as exc:
        raise VidrefineError(f"generator {name!r} failed to start: {exc!r}") from exc
    problem = check_generator(name, generator)
    if problem is not None:
        raise VidrefineError(problem)
    return generator


__all__ = [
    "API_VERSION",
    "GENERATOR_GROUP",
    "GeneratedClip",
    "Generator",
    "GeneratorEntry",
    "check_generator",
    "create_generator",
    "discover_generators",
]
