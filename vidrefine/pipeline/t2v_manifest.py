"""The t2v run manifest: which prompt, seed and settings made each preview and refined clip.

One JSON file, `t2v-manifest.json`, beside the outputs. Paths in it are relative to its folder
so the folder can be moved. `caption_for_preview` lets `vidrefine upscale PREVIEW.mp4` find the
caption of a preview made earlier.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidrefine.errors import BadInput

MANIFEST_NAME = "t2v-manifest.json"
FORMAT_VERSION = 1


def manifest_path(folder: Path) -> Path:
    """Where the manifest of an output folder lives."""
    return folder / MANIFEST_NAME


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`, or an empty one when there is none yet."""
    if not path.is_file():
        return {"vidrefine_t2v_manifest": FORMAT_VERSION, "clips": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the t2v manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list):
        raise BadInput(f"{path} is not a vidrefine t2v manifest (no 'clips' list)")
    return data


def record_clip(path: Path, clip: Mapping[str, Any]) -> None:
    """Add or replace (same preview name) one clip entry; the file is replaced atomically."""
    data = read_manifest(path)
    clips = [c for c in data["clips"] if c.get("preview") != clip["preview"]]
    clips.append(dict(clip))
    clips.sort(key=lambda c: (c.get("prompt_number", 0), c.get("seed", 0), c["preview"]))
    data["clips"] = clips
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(temp, path)


def clip_entry(path: Path, preview_name: str) -> dict[str, Any] | None:
    """The entry of the clip whose preview is `preview_name`, or None."""
    clips = read_manifest(path)["clips"]
    return next((c for c in clips if c.get("preview") == preview_name), None)


def caption_for_preview(video: Path) -> str | None:
    """The prompt a t2v manifest beside `video` records for it (as preview or output), or None."""
    path = manifest_path(video.parent)
    if not path.is_file():
        return None
    try:
        clips = read_manifest(path)["clips"]
    except BadInput:
        return None
    for clip in clips:
        if video.name in (clip.get("preview"), clip.get("output")):
            prompt = clip.get("prompt")
            return prompt if isinstance(prompt, str) and prompt.strip() else None
    return None
