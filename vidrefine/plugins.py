"""Text-to-video generator plugins: the versioned protocol and discovery by entry point.

A generator turns one caption embedding and a seed into a low-resolution clip that stage II then
refines. Generators are found only through the entry-point group `vidrefine.generators`; vidrefine
never imports one by name, the bundled FlashVideo stage I included (see generators/README.md).
The discovery and the shared protocol checks here serve the captioner plugins too
(`vidrefine.captioners`).
"""

from __future__ import annotations

import inspect
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

    from vidrefine.config import DiTConfig, RunConfig
    from vidrefine.progress import Progress

GENERATOR_GROUP = "vidrefine.generators"
API_VERSION = 2  # bump when the protocol below changes incompatibly (2: dit_config,
# latent_shape, configure and describe required; load takes the plan's placement)


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


class Placement(Protocol):
    """How a generator's models are loaded: the run plan's `vidrefine.plan.clip.ModelPlacement`.

    Declared here by its fields (the plugin contract stays free of the planner); the same
    placement serves T5, the generator and stage II.
    """

    @property
    def dtype(self) -> str:
        """Precision of the DiT: "bf16", "fp16" or "fp32" (resolved for the device, never
        "auto"); `vidrefine.runtime.device.torch_dtype` maps it to a `torch.dtype`.
        """

    @property
    def vae_dtype(self) -> str:
        """Precision of the VAE, named like `dtype`."""

    @property
    def offload(self) -> str:
        """Layer streaming: "none", or "layer" (blocks stay in host memory and stream in)."""

    @property
    def compile(self) -> bool:
        """Whether transformer blocks are `torch.compile`d."""


@runtime_checkable
class Generator(Protocol):
    """What a text-to-video generator plugin provides (plugin API version 2).

    Every member is required: vidrefine calls them directly and never probes a generator for
    optional ones. Before any weight loads, the run reads `dit_config` and (only when it is not
    None) `latent_shape()` to plan memory, and calls `configure(config)`; neither planning member
    may depend on `configure`. Then `load(...)`, `generate(...)` once per clip, `describe()` for
    each clip's manifest entry, and `release()`.

    Attributes:
        api_version: the protocol version the plugin was written for (`API_VERSION`, 2);
            vidrefine refuses any other.
        name: short name shown by `vidrefine t2v --list-generators`.
        size_hw: native output size (height, width) in pixels.
        num_frames: frames per generated clip.
        fps: frame rate of the clip.
        required_weights: keys of vidrefine's weights table
            (`vidrefine.checkpoints.weights.BY_KEY`) that must be present before `load`;
            vidrefine fetches them like its own. () for none.
        dit_config: the architecture of the generator's DiT, which the memory plan sizes
            (weights, activations, layer streaming) together with `latent_shape()`; None when
            there is nothing to plan (a generator without a DiT).
    """

    api_version: int
    name: str
    size_hw: tuple[int, int]
    num_frames: int
    fps: Fraction
    required_weights: tuple[str, ...]
    dit_config: DiTConfig | None

    def latent_shape(self) -> tuple[int, int, int, int]:
        """(T', C, h, w) of the DiT's sampling state, e.g. (13, 16, 32, 60) for 49x256x480.

        Called before `load`, possibly before `configure` (the plan comes first), and only when
        `dit_config` is not None: a generator without a DiT may raise NotImplementedError here.
        """

    def configure(self, config: RunConfig) -> None:
        """Read the run's knobs before `load` (e.g. `stage1_cfg_scale`, `stage1_guidance`,
        `vae_mode`, `vram_gb`); raise `BadInput` for a value it cannot use.
        """

    def load(self, weights_dir: Path | None, *, device: torch.device, placement: Placement) -> None:
        """Load the weights for `device` as the run's plan places them.

        Args:
            weights_dir: the user's --weights folder, or None (vidrefine's search path).
            device: where `generate` runs.
            placement: the plan's decision (a `vidrefine.plan.clip.ModelPlacement`): `dtype`
                and `vae_dtype` ("bf16", "fp16", "fp32", never "auto"), `offload` ("none", or
                "layer": transformer blocks stay in host memory and stream to `device`) and
                `compile`.
        """

    def generate(
        self, prompt_embedding: torch.Tensor, seed: int, *, progress: Progress
    ) -> GeneratedClip:
        """Generate one clip from a (1, 226, 4096) T5 embedding; same seed, same clip."""

    def release(self) -> None:
        """Free the weights (device memory included) so that stage II has the device alone."""

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings that decided the clip, recorded in the run manifest."""


# Every member of `Generator`: data attributes, then methods.
GENERATOR_ATTRIBUTES = (
    "api_version",
    "name",
    "size_hw",
    "num_frames",
    "fps",
    "required_weights",
    "dit_config",
)
GENERATOR_METHODS = ("latent_shape", "configure", "load", "generate", "release", "describe")
_LOAD_KEYWORDS = ("device", "placement")
_ABSENT = object()


@dataclass
class PluginEntry:
    """A discovered plugin: its entry point, and the error that made it unusable, if any."""

    name: str
    value: str  # "module:object" as registered
    package: str  # the distribution that registered it
    factory: Callable[[], Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the plugin imported and looks like its protocol."""
        return self.error is None


GeneratorEntry = PluginEntry  # a discovered generator
Checker = Callable[[str, object], "str | None"]  # (name, plugin or its class) -> problem


def check_members(
    kind: str,
    name: str,
    obj: object,
    *,
    version: tuple[str, int],
    attributes: tuple[str, ...],
    methods: tuple[str, ...],
) -> str | None:
    """The checks every plugin protocol shares, or None: the version first (`version` is the
    API's name and number), then missing members, then members that are not callable. A class
    is checked for its methods only; its data attributes may be set by `__init__`.
    """
    api, number = version
    found = getattr(obj, "api_version", _ABSENT)
    if found is not _ABSENT and found != number:
        return (
            f"{kind} {name!r} implements {api} version {found}; this vidrefine supports "
            f"version {number}"
        )
    wanted = (*(() if isinstance(obj, type) else attributes), *methods)
    missing = [a for a in wanted if not hasattr(obj, a)]
    if missing:
        return f"{kind} {name!r} lacks {', '.join(missing)}"
    not_callable = [m for m in methods if not callable(getattr(obj, m))]
    if not_callable:
        return f"{kind} {name!r} has {', '.join(not_callable)} that is not callable"
    return None


def check_generator(name: str, obj: object) -> str | None:
    """None when `obj` (a generator or its class) satisfies the protocol, else a one-line reason.

    The version is checked first, so a plugin written for another version is told that rather
    than what it lacks. A class is checked for its methods and its class-level `api_version`;
    its data attributes may be set by `__init__`, so they are checked on the instance
    (`create_generator` checks the object it creates).
    """
    problem = check_members(
        "generator",
        name,
        obj,
        version=("plugin API", API_VERSION),
        attributes=GENERATOR_ATTRIBUTES,
        methods=GENERATOR_METHODS,
    )
    if problem is not None:
        return problem
    keywords = _missing_keywords(obj.load, _LOAD_KEYWORDS)  # type: ignore[attr-defined]
    if keywords:
        return (
            f"generator {name!r} has load() without the keyword(s) {', '.join(keywords)}; "
            f"plugin API version {API_VERSION} calls load(weights_dir, *, device, placement)"
        )
    return None


def _missing_keywords(function: Callable[..., Any], names: tuple[str, ...]) -> list[str]:
    """The `names` that `function` cannot take as keyword arguments (none if unknowable)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to say
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n in names if n not in params or params[n].kind not in keyword_kinds]


def _inspect(ep: EntryPoint, kind: str, check: Checker) -> PluginEntry:
    package = ep.dist.name if ep.dist is not None else "?"
    entry = PluginEntry(ep.name, ep.value, package)
    try:
        factory = ep.load()
    except Exception as exc:  # a third-party import can fail in any way
        entry.error = f"{kind} {ep.name!r} ({ep.value}) cannot be imported: {exc!r}"
        return entry
    if not callable(factory):
        entry.error = f"{kind} {ep.name!r} ({ep.value}) is not a class or factory"
        return entry
    if isinstance(factory, type):  # a factory function is checked on what it returns
        entry.error = check(ep.name, factory)
    entry.factory = factory
    return entry


def discover_plugins(
    group: str, kind: str, check: Checker, warn: Callable[[str], None] | None = None
) -> dict[str, PluginEntry]:
    """Every plugin registered in the entry-point `group` by name; a broken one is kept with
    its error and warned about. The first registration of a name wins; a later one with the
    same name is reported.
    """
    found: dict[str, PluginEntry] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        entry = _inspect(ep, kind, check)
        if ep.name in found:
            if warn is not None:
                warn(f"{kind} {ep.name!r} is registered twice; using {found[ep.name].value}")
            continue
        if entry.error is not None and warn is not None:
            warn(entry.error)
        found[ep.name] = entry
    return found


def create_plugin(
    name: str, entries: dict[str, PluginEntry], group: str, kind: str, check: Checker
) -> Any:
    """Instantiate the plugin registered as `name` among `entries` (found in `group`); an
    unknown name is BadInput, a broken plugin its captured error.
    """
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(sorted(entries)) or f"none (entry-point group {group})"
        raise BadInput(f"no {kind} named {name!r}; installed: {known}")
    if entry.error is not None or entry.factory is None:
        raise VidrefineError(entry.error or f"{kind} {name!r} is unusable")
    try:
        plugin = entry.factory()
    except VidrefineError:
        raise
    except Exception as exc:
        raise VidrefineError(f"{kind} {name!r} failed to start: {exc!r}") from exc
    problem = check(name, plugin)
    if problem is not None:
        raise VidrefineError(problem)
    return plugin


def discover_generators(warn: Callable[[str], None] | None = None) -> dict[str, GeneratorEntry]:
    """Every registered generator by name; a broken one is kept with its error and warned about.

    The first registration of a name wins; a later one with the same name is reported.
    """
    return discover_plugins(GENERATOR_GROUP, "generator", check_generator, warn)


def create_generator(name: str, *, entries: dict[str, GeneratorEntry] | None = None) -> Generator:
    """Instantiate the generator registered as `name`; a broken one raises its captured error."""
    entries = discover_generators() if entries is None else entries
    return create_plugin(name, entries, GENERATOR_GROUP, "generator", check_generator)


__all__ = [
    "API_VERSION",
    "GENERATOR_ATTRIBUTES",
    "GENERATOR_GROUP",
    "GENERATOR_METHODS",
    "GeneratedClip",
    "Generator",
    "GeneratorEntry",
    "Placement",
    "PluginEntry",
    "check_generator",
    "check_members",
    "create_plugin",
    "create_generator",
    "discover_generators",
    "discover_plugins",
]
