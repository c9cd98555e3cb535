"""Presets: `presets/*.toml` -> `RunConfig`, merged as dataclass defaults < preset < CLI flags.

A preset is a flat TOML table of `RunConfig` keys. Unknown keys, wrong types and out-of-range
values are `BadInput` errors that name the key, its limits (declared in `vidrefine.config`) and
the file (or `command line` for flags), raised before anything is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vidrefine.config import RunConfig, check_knobs, from_dict
from vidrefine.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PRESET = "default"
_PACKAGE_DIR = Path(__file__).resolve().parent
# `presets/` at the repository root is the source; the package's `preset_files` is a link to it
# that setuptools copies into wheels. The root folder is also tried for checkouts without links.
PRESET_DIRS = (_PACKAGE_DIR / "preset_files", _PACKAGE_DIR.parent / "presets")


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
        if path.is_dir():
            raise _folder_given(path)
        if not path.is_file():
            raise BadInput(f"preset file {path} does not exist")
        return path
    shipped = available_presets()
    if name_or_path not in shipped and Path(name_or_path).expanduser().is_dir():
        raise _folder_given(Path(name_or_path).expanduser())
    if name_or_path not in shipped:
        raise BadInput(
            f"unknown preset {name_or_path!r}; shipped presets: {', '.join(shipped)} "
            "(or give a path to a .toml file)"
        )
    return shipped[name_or_path]


def _folder_given(folder: Path) -> BadInput:
    """The error for --preset DIR: a folder is not a preset file; name one inside it if any."""
    inside = sorted(folder.glob("*.toml"))
    hint = f"e.g. --preset {inside[0]}" if inside else "a .toml file or a shipped preset name"
    return BadInput(f"preset {folder} is a folder, not a preset file; give one file ({hint})")


def read_preset(path: Path) -> dict[str, Any]:
    """Read one preset file as a flat dict, checking keys, types and ranges."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read preset {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from exc
    check_knobs(data, source=str(path))
    return data


def load_config(
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    source: str = "command line",
) -> RunConfig:
    """Merge defaults < preset (name or path; `default` when None) < `overrides` (flags).

    `overrides` holds only what the user set: None values are ignored. `names` maps keys to
    the flags that set them and `source` says where they came from, for error messages.
    """
    merged = read_preset(preset_path(preset or DEFAULT_PRESET))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_knobs(flags, source=source, names=names)
    merged.update(flags)
    return from_dict(RunConfig, merged, source="preset and flags merged")


def to_toml(config: RunConfig, *, header: str = "") -> str:
    """Write `config` as a preset file (None values become a comment), e.g. for --show-config.

    Whatever the strings hold (line breaks, quotes, control characters), the file reads back
    as the same config.
    """
    lines = [f"# {_comment(line)}" for line in header.splitlines()] if header else []
    for key, value in asdict(config).items():
        if value is None:
            lines.append(f"# {key} is unset (None)")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f"{key} = {toml_string(value)}")
        elif isinstance(value, tuple):
            lines.append(f"{key} = [{', '.join(toml_string(str(v)) for v in value)}]")
        else:
            lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_SHORT_ESCAPES |= {'"': '\\"', "\\": "\\\\"}


def _control(char: str) -> bool:
    """Whether `char` is a control character, which TOML allows in no string or comment."""
    return ord(char) < 0x20 or ord(char) == 0x7F


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        _SHORT_ESCAPES.get(c, f"\\u{ord(c):04x}") if c in _SHORT_ESCAPES or _control(c) else c
        for c in text
    )
    return f'"{escaped}"'


def _comment(text: str) -> str:
    """`text` fit for a TOML comment: its control characters but tab (a file name may hold
    them) written as hex escapes.
    """
    return "".join(f"\\x{ord(c):02x}" if _control(c) and c != "\t" else c for c in text)


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
    "describe",
    "load_config",
    "preset_dir",
    "preset_path",
    "read_preset",
    "to_toml",
    "toml_string",
]
