"""Presets: `presets/*.toml` -> `RunConfig`, merged as dataclass defaults < preset < CLI flags.

A preset is a flat TOML table of `RunConfig` keys. Unknown keys, wrong types and out-of-range
values are `BadInput` errors that name the key and the file (or `command line` for flags).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from vidrefine.config import RunConfig, from_dict
from vidrefine.errors import BadInput
from vidrefine.geometry import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PRESET = "default"
_PACKAGE_DIR = Path(__file__).resolve().parent
# `presets/` at the repository root is the source; the package's `preset_files` is a link to it
# that setuptools copies into wheels. The root folder is also tried for checkouts without links.
PRESET_DIRS = (_PACKAGE_DIR / "preset_files", _PACKAGE_DIR.parent / "presets")

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_DTYPES = ("auto", "bf16", "fp16", "fp32")


def preset_dir() -> Path:
    """The folder holding the shipped presets."""
    for folder in PRESET_DIRS:
        if folder.is_dir() and any(folder.glob("*.toml")):
            return folder
    raise BadInput(f"no preset folder found (looked in {', '.join(map(str, PRESET_DIRS))})")


def available_presets() -> dict[str, Path]:
    """Shipped presets by name, sorted."""
    return {p.stem: p for p in sorted(preset_dir().glob("*.toml"))}


def preset_path(name_or_path: str) -> Path:
    """Find a preset by name (`faithful`) or as a path to a TOML file of the user's."""
    if name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise BadInput(f"preset file {path} does not exist")
        return path
    shipped = available_presets()
    if name_or_path not in shipped:
        raise BadInput(
            f"unknown preset {name_or_path!r}; shipped presets: {', '.join(shipped)} "
            "(or give a path to a .toml file)"
        )
    return shipped[name_or_path]


def read_preset(path: Path) -> dict[str, Any]:
    """Read one preset file as a flat dict, checking keys, types and ranges."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read preset {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from exc
    check_values(data, source=str(path))
    return data


def load_config(
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    names: Mapping[str, str] | None = None,
) -> RunConfig:
    """Merge defaults < preset (name or path; `default` when None) < `overrides` (flags).

    `overrides` holds only what the user set: None values are ignored. `names` maps keys to
    the flags that set them, for error messages.
    """
    merged = read_preset(preset_path(preset or DEFAULT_PRESET))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_values(flags, source="command line", names=names)
    merged.update(flags)
    config = from_dict(RunConfig, _floats_as_floats(merged), source="config")
    if config.window_overlap_latent >= config.window_latent:
        raise BadInput(
            f"window_overlap_latent ({config.window_overlap_latent}) must be smaller than "
            f"window_latent ({config.window_latent}) once preset and flags are merged"
        )
    return config


def _floats_as_floats(data: dict[str, Any]) -> dict[str, Any]:
    """TOML `shift = 3` is an int; a float field should still hold 3.0."""
    annotations = {f.name: str(f.type) for f in fields(RunConfig)}
    return {
        k: float(v) if "float" in annotations[k] and type(v) is int else v for k, v in data.items()
    }


# Checks of single values: each returns a complaint, or None when the value is fine.
def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "aspect": _one_of("keep", "stretch"),
    "fps_mode": _one_of("source", "fixed8"),
    "codec": _one_of("h264", "hevc"),
    "pix_fmt": _one_of("yuv420p", "yuv420p10le"),
    "crf": _between(0, 51),
    "encoder_preset": _one_of(*X264_PRESETS),
    "steps": _between(1, 100),
    "shift": _between(0.05, 20.0),
    "cfg_scale": _between(1.0, 50.0),
    "strength": _between(600, 750),  # the range the authors suggest (spec §5.2, §9.3)
    "timestep_rounding": _one_of("exact", "bf16"),
    "seed": _between(0, 2**63 - 1),
    "dtype": _one_of(*_DTYPES),
    "vae_dtype": _one_of(*_DTYPES),
    "vram_gb": _between(0.5, 4096.0),
    "offload": _one_of("none", "layer"),
    "attention": _one_of("auto", "cudnn", "flash", "efficient", "math"),
    "window_latent": _between(1, 64),
    "window_overlap_latent": _between(0, 63),
    "vae_mode": _one_of("blend", "faithful", "whole"),
    "vae_tile_latent": lambda v: None if v == 0 or v >= 8 else "must be 0 (planned) or >= 8",
    "vae_tile_overlap_latent": _between(0, 64),
    "vae_chunk_latent": _between(0, 64),
    "stage1_cfg_scale": _between(1.0, 50.0),
    "stage1_guidance": _one_of("dynamic", "faithful"),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}


def _type_complaint(annotation: str, value: Any) -> str | None:
    kinds = [k.strip() for k in annotation.split("|")]
    allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
    if not allowed:
        return None
    if isinstance(value, bool) and bool not in allowed:
        return f"must be {' or '.join(kinds)}, not a boolean"
    return None if isinstance(value, allowed) else f"must be {' or '.join(kinds)}"


def check_values(
    data: Mapping[str, Any], *, source: str, names: Mapping[str, str] | None = None
) -> None:
    """Raise BadInput naming the first unknown key, mistyped or out-of-range value and `source`.

    `names` maps keys to what the user typed (e.g. `strength` -> `--strength`).
    """
    annotations = {f.name: str(f.type) for f in fields(RunConfig)}
    unknown = sorted(set(data) - set(annotations))
    if unknown:
        raise BadInput(
            f"{source}: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(annotations))}"
        )
    for key, value in data.items():
        complaint = _type_complaint(annotations[key], value)
        if complaint is None and key == "size":
            try:
                parse_size(value)
            except BadInput as exc:
                raise BadInput(f"{source}: {exc}") from exc
        if complaint is None and key in _CHECKS:
            complaint = _CHECKS[key](value)
        if complaint is not None:
            shown = (names or {}).get(key, key)
            raise BadInput(f"{source}: {shown} = {value!r}: {complaint}")
    overlap = data.get("window_overlap_latent")
    window = data.get("window_latent")
    if overlap is not None and window is not None and overlap >= window:
        raise BadInput(f"{source}: window_overlap_latent must be smaller than window_latent")


def to_toml(config: RunConfig, *, header: str = "") -> str:
    """Write `config` as a preset file (None values become a comment), e.g. for --show-config."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for key, value in asdict(config).items():
        if value is None:
            lines.append(f"# {key} is unset (None)")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
        else:
            lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


def describe(path: Path) -> str:
    """The first comment paragraph of a preset file: what it is for, in one line."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or (not text and words):
            break
        if text:
            words.append(text)
    return " ".join(words)


__all__ = [
    "DEFAULT_PRESET",
    "available_presets",
    "check_values",
    "describe",
    "load_config",
    "preset_dir",
    "preset_path",
    "read_preset",
    "to_toml",
]
