"""The training cache (`vidrefine tune prepare`): what training reads instead of clips.

Per window: the HR latent and K latents of degraded copies (scaled, (T, C, h, w)); per distinct
caption: its T5 states (226, D). Each goes to its own safetensors file, written atomically and
named by a fingerprint of its inputs (file path, size and modification time; the settings; the
model files), so a rerun reuses every file whose inputs are unchanged and an interrupted run
keeps what it finished. One window is in memory at a time; T5 is freed before the VAE loads.
`manifest.json`, written last, lists the windows a training run reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from vidrefine.checkpoints.common import save_safetensors
from vidrefine.config import POSTERIORS, STAGE2_LATENT_SCALE
from vidrefine.errors import BadInput, OutputExists, OutputNotWritable
from vidrefine.io.atomic import atomic_output
from vidrefine.progress import NullProgress, Progress
from vidrefine.train.data import Window, find_clips, plan_windows
from vidrefine.train.degrade import DegradationSettings, degrade
from vidrefine.train.frames import cover_and_crop, crop_hw, to_model_video, window_frames

FORMAT = "vidrefine-train-cache"
FORMAT_VERSION = 1
MARKER = "cache.json"  # written first: says the folder is a cache vidrefine made
MANIFEST = "manifest.json"
TEXT, WINDOWS = "text", "windows"
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class PrepareSettings:
    """How windows are cut, degraded and stored; all of it goes into each window's fingerprint."""

    size: str = "1080p"
    frames: int = 49
    copies: int = 3  # degraded copies (K) per window, each with its own seed
    seed: int = 0
    shots: bool = True
    posterior: str = "sample"  # one draw of the VAE posterior (the original's) or its mean
    dtype: str = "bf16"  # latents and T5 states on disk
    degradation: DegradationSettings = field(default_factory=DegradationSettings)

    def __post_init__(self) -> None:
        """Refuse settings the cache cannot be made with."""
        if self.copies < 1:
            raise BadInput(f"--copies {self.copies}: each window needs at least one copy")
        if self.posterior not in POSTERIORS:
            raise BadInput(f"posterior must be one of {', '.join(POSTERIORS)}")
        if self.dtype not in DTYPES:
            raise BadInput(f"cache dtype must be one of {', '.join(DTYPES)}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe settings (the manifest records them)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PrepareResult:
    """What `prepare_cache` did."""

    folder: Path
    windows: int
    made: int
    reused: int
    captions: int


def digest(*parts: object) -> str:
    """A 32-hex-digit SHA-256 of the parts' JSON (stable across runs and machines)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_key(path: Path | None) -> str | None:
    """A file's fingerprint: where it is, its size and its modification time."""
    if path is None:
        return None
    stat = path.stat()
    return digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def folder_key(folder: Path) -> str:
    """A folder's fingerprint: every file's name and fingerprint."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return digest([(str(p.relative_to(folder)), file_key(p)) for p in files])


def open_cache_folder(folder: Path) -> bool:
    """Make `folder` a cache (True when this call created it); refuse one vidrefine did not make."""
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise OutputNotWritable(f"{folder}: is a file; give a folder for the cache")
    if marker.is_file():
        return False
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputExists(
            f"{folder}: exists and is not a training cache (no {MARKER}); it is never written "
            "into: choose a new folder"
        )
    created = not folder.exists()
    if created and not folder.parent.is_dir():
        raise OutputNotWritable(f"{folder}: folder {folder.parent} does not exist; create it first")
    folder.mkdir(exist_ok=True)
    for sub in (TEXT, WINDOWS):
        (folder / sub).mkdir(exist_ok=True)
    write_json(marker, {"format": FORMAT, "version": FORMAT_VERSION})
    return created


def write_json(path: Path, data: object) -> None:
    """`data` as JSON at `path`, atomically (a file of ours, so replaced)."""
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Tensors as safetensors at `path`, atomically, with `info` as JSON metadata."""
    metadata = {"vidrefine_format": FORMAT, "info": json.dumps(info, sort_keys=True)}
    with atomic_output(path, overwrite=True) as temp:
        save_safetensors(tensors, temp, metadata)


def write_text_states(
    folder: Path,
    captions: Sequence[str],
    t5_folder: Path,
    settings: PrepareSettings,
    device: torch.device,
    progress: Progress,
) -> dict[str, str]:
    """T5 states of each caption not cached yet; returns caption -> its file's key."""
    t5_key = folder_key(t5_folder)
    keys = {caption: digest("text", t5_key, caption) for caption in dict.fromkeys(captions)}
    todo = [c for c, key in keys.items() if not (folder / TEXT / f"{key}.safetensors").is_file()]
    if not todo:
        return keys
    from vidrefine.models.text import TEXT_LENGTH, T5TextEncoder

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    encoder = T5TextEncoder.from_folder(t5_folder, dtype=dtype, device=device)
    try:
        with progress.task("captions", total=len(todo), unit="captions") as bar:
            for caption in todo:
                encoded = encoder.encode([caption])
                if encoded.truncated[0]:
                    progress.warn(f"caption cut to {TEXT_LENGTH} tokens: {caption[:60]!r}...")
                states = encoded.embeddings[0].to("cpu", DTYPES[settings.dtype])
                path = folder / TEXT / f"{keys[caption]}.safetensors"
                write_tensors(path, {"context": states}, {"caption": caption})
                encoder.cache.clear()
                bar.advance()
    finally:
        encoder.release()
    return keys


class WindowEncoder:
    """The VAE and what it needs to turn a window's frames into scaled latents (T, C, h, w)."""

    def __init__(self, vae_path: Path, settings: PrepareSettings, device: torch.device) -> None:
        """Load the VAE on `device` (bf16 on CUDA, as `upscale`; fp32 on the CPU)."""
        from vidrefine.checkpoints.vae import load_vae

        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.vae = load_vae(vae_path, dtype=self.dtype, device=device)
        self.device, self.settings = device, settings

    def encode(self, frames: Any, seed: int) -> torch.Tensor:
        """uint8 frames (T, H, W, 3) -> scaled latent (T, C, h, w) on the CPU."""
        from vidrefine.pipeline.vae_pass import encode_video
        from vidrefine.plan.vae import plan_vae

        plan = plan_vae(frames.shape[1:3], len(frames), budget_gb=self._budget(), mode="blend")
        generator = torch.Generator().manual_seed(seed)
        video = to_model_video(frames, self.device, self.dtype)
        sample = self.settings.posterior == "sample"
        z = encode_video(self.vae, video, plan, sample=sample, generator=generator)
        z = rearrange(z.float() * STAGE2_LATENT_SCALE, "1 c t h w -> t c h w")
        return z.to("cpu", DTYPES[self.settings.dtype])

    def _budget(self) -> float | None:
        if self.device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        return free / 1024**3 * 0.8


def seed_of(window: Window, settings: PrepareSettings, what: object) -> int:
    """A 32-bit seed for one random stream of a window (a copy's degradation, a posterior).

    From the clip's name, the window's frames and the run's seed, not from where the clip is
    or when it was written: the same data gives the same draws wherever it is prepared.
    """
    where = (window.clip.path.name, window.start_frame, window.frames)
    return int(digest(settings.seed, where, what)[:8], 16)


def window_key(window: Window, settings: PrepareSettings, vae_key: str) -> str:
    """The fingerprint of a window's cache file: its clip(s), its frames, settings and VAE."""
    clip = window.clip
    files = (file_key(clip.path), file_key(clip.lr_path))
    return digest("window", files, window.start_frame, window.frames, settings.as_dict(), vae_key)


def encode_window(
    encoder: WindowEncoder, window: Window, frames: Any, lr_frames: Any
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The HR latent and the K degraded copies' latents of one window, and their records."""
    settings = encoder.settings
    hr = cover_and_crop(frames, crop_hw(frames.shape[1:3], settings.size))
    tensors = {"hr": encoder.encode(hr, seed_of(window, settings, "posterior-hr"))}
    records = []
    for copy in range(settings.copies):
        seed = seed_of(window, settings, copy)
        low, record = degrade(hr, seed, settings.degradation, lr_frames=lr_frames)
        tensors[f"lr.{copy}"] = encoder.encode(low, seed_of(window, settings, f"posterior-{copy}"))
        records.append(record)
    return tensors, records


def _header_shape(path: Path, name: str) -> list[int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.get_slice(name).get_shape())


def write_windows(
    folder: Path,
    windows: Sequence[Window],
    text_keys: dict[str, str],
    vae_path: Path,
    settings: PrepareSettings,
    device: torch.device,
    progress: Progress,
) -> tuple[list[dict[str, Any]], int]:
    """Cache every window not cached yet, clip by clip; returns the manifest entries, and how
    many windows were made.
    """
    vae_key = file_key(vae_path)
    entries, todo = [], {}
    for window in windows:
        key = window_key(window, settings, vae_key)
        entries.append({"key": key, "name": window.name, "text": text_keys[window.caption]})
        if not (folder / WINDOWS / f"{key}.safetensors").is_file():
            todo.setdefault(window.clip.path, []).append((window, key))
    made = sum(len(items) for items in todo.values())
    encoder = WindowEncoder(vae_path, settings, device) if made else None
    with progress.task("windows", total=made, unit="windows") as bar:
        for items in todo.values():
            clip = items[0][0].clip
            hr = window_frames(clip.path, [w for w, _ in items])
            lr = window_frames(clip.lr_path, [w for w, _ in items]) if clip.lr_path else None
            for window, key in items:
                frames, lr_frames = next(hr), next(lr) if lr is not None else None
                tensors, records = encode_window(encoder, window, frames, lr_frames)
                info = {"window": window.name, "caption": window.caption, "copies": records}
                write_tensors(folder / WINDOWS / f"{key}.safetensors", tensors, info)
                bar.advance()
    for entry in entries:
        path = folder / WINDOWS / f"{entry['key']}.safetensors"
        entry["latent_shape"] = _header_shape(path, "hr")
    return entries, made


def prepare_cache(
    data: str | Path,
    out: str | Path,
    settings: PrepareSettings,
    *,
    vae_path: Path,
    t5_folder: Path,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """Cache the windows of the data folder `data` into `out` (see the module docstring).

    Everything about the data (captions, lengths, pairs) is checked before a model loads.
    A cache this call created is removed again when it fails before finishing a window.
    """
    folder, progress = Path(out), progress or NullProgress()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clips = find_clips(data)
    for clip in clips:  # a bad --size fails here, before any model loads
        crop_hw(clip.info.display_hw, settings.size)
    windows = list(plan_windows(clips, settings.frames, shots=settings.shots))
    created = open_cache_folder(folder)
    try:
        text_keys = write_text_states(
            folder, [w.caption for w in windows], t5_folder, settings, device, progress
        )
        entries, made = write_windows(
            folder, windows, text_keys, vae_path, settings, device, progress
        )
    except BaseException:
        if created and not any((folder / WINDOWS).glob("*.safetensors")):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    manifest = {"format": FORMAT, "settings": settings.as_dict(), "windows": entries}
    write_json(folder / MANIFEST, manifest)
    return PrepareResult(folder, len(entries), made, len(entries) - made, len(text_keys))


@dataclass(frozen=True)
class CachedWindow:
    """One cached window: scaled latents (T, C, h, w) float32 and T5 states (L, D)."""

    name: str
    hr: torch.Tensor
    degraded: list[torch.Tensor]
    context: torch.Tensor


class TrainCache:
    """A prepared cache, read window by window (memory-mapped files, one window at a time)."""

    def __init__(self, folder: str | Path) -> None:
        """Open `folder`; BadInput unless `vidrefine tune prepare` finished writing it."""
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        if not (self.folder / MARKER).is_file() or not manifest.is_file():
            raise BadInput(
                f"{self.folder}: not a finished training cache (no {MANIFEST}); make it with "
                f"`vidrefine tune prepare DATA -o {self.folder}`"
            )
        data = json.loads(manifest.read_text())
        self.settings: dict[str, Any] = data["settings"]
        self.entries: list[dict[str, Any]] = data["windows"]
        self.key = digest([e["key"] for e in self.entries])

    def __len__(self) -> int:
        return len(self.entries)

    def latent_shape(self, index: int) -> tuple[int, ...]:
        """(T, C, h, w) of window `index`."""
        return tuple(self.entries[index]["latent_shape"])

    def window(self, index: int) -> CachedWindow:
        """Window `index`, read from its files."""
        from safetensors.torch import load_file

        entry = self.entries[index]
        path = self.folder / WINDOWS / f"{entry['key']}.safetensors"
        text = self.folder / TEXT / f"{entry['text']}.safetensors"
        if not path.is_file() or not text.is_file():
            raise BadInput(f"{self.folder}: {entry['name']} is missing; run tune prepare again")
        tensors = load_file(str(path))
        copies = sorted((k for k in tensors if k.startswith("lr.")), key=lambda k: int(k[3:]))
        return CachedWindow(
            name=entry["name"],
            hr=tensors["hr"].float(),
            degraded=[tensors[k].float() for k in copies],
            context=load_file(str(text))["context"].float(),
        )


__all__ = [
    "CachedWindow",
    "PrepareResult",
    "PrepareSettings",
    "TrainCache",
    "prepare_cache",
]
