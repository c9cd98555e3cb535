"""What the page asks of the models: facts about a clip, a preview, a whole-clip refine.

One `Refiner` is loaded for the server's life; each request gets a configured copy that shares
its models and caption states (`Refiner.configured`), so models load once. The device runs one
thing at a time: previews and jobs take the same lock.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from vidrefine.captioners import DEFAULT_CAPTIONER
from vidrefine.captions import CaptionCue, load_captions
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput
from vidrefine.io.probe import MediaInfo, probe
from vidrefine.pipeline.api import Refiner
from vidrefine.pipeline.preview import Preview
from vidrefine.pipeline.shots import planned_shots
from vidrefine.plan.shots import Shot
from vidrefine.presets import load_config
from vidrefine.progress import Progress
from vidrefine.web.jobs import Job, JobProgress
from vidrefine.web.paths import Folders, free_name

# page control -> RunConfig key; an empty control leaves the preset's value
SETTING_KEYS = ("size", "strength", "steps", "seed", "color_fix")
PRESET_ADAPTERS, NO_ADAPTER = "the preset's", "none"  # the adapter control's fixed choices


class Engine:
    """The loaded refiner, the folders, and the device lock."""

    def __init__(
        self,
        refiner: Refiner,
        preset: str,
        folders: Folders,
        *,
        generator: str = "flashvideo-stage1",
        weights: Path | None = None,
        offline: bool = False,
        captioner: str = DEFAULT_CAPTIONER,
        adapters: Path | None = None,
    ) -> None:
        self.refiner, self.preset, self.folders = refiner, preset, folders
        self.adapters = adapters  # `serve --adapters DIR`: the tuned adapters the page offers
        self.generator, self.weights, self.offline = generator, weights, offline
        self.captioner = captioner  # the "Auto" button's captioner plugin
        self.device_lock = threading.Lock()  # held by whatever runs on the device

    def check(self, settings: Mapping[str, Any]) -> RunConfig:
        """The config the page's settings make (checked like flags; BadInput naming a bad one)."""
        return load_config(*self._settings(settings), source="the page's settings")

    def _settings(self, settings: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        preset = str(settings.get("preset") or self.preset)
        knobs = {k: settings[k] for k in SETTING_KEYS if settings.get(k) not in (None, "")}
        return preset, knobs | self._adapter(settings)

    def adapter_names(self) -> list[str]:
        """The adapter files (`*.safetensors`) in the adapters folder, by name."""
        if self.adapters is None or not self.adapters.is_dir():
            return []
        return sorted(p.name for p in self.adapters.glob("*.safetensors") if p.is_file())

    def _adapter(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The `lora` knob of the adapter control: {} keeps the preset's, () is none."""
        name = settings.get("adapter") or PRESET_ADAPTERS
        if name == PRESET_ADAPTERS:
            return {}
        if name == NO_ADAPTER:
            return {"lora": ()}
        if name not in self.adapter_names():  # never a path the page was sent
            raise BadInput(f"adapter {name!r} is not in the adapters folder ({self.adapters})")
        scale = settings.get("adapter_scale")
        scale = 1.0 if scale in (None, "") else float(scale)
        return {"lora": (f"{self.adapters / name}:{scale:g}",)}

    def _configured(self, settings: Mapping[str, Any], progress: Progress | None) -> Refiner:
        """The refiner for one run, on the models the last run left loaded (device lock held)."""
        preset, knobs = self._settings(settings)
        source = "the page's settings"
        self.refiner = self.refiner.configured(preset, progress=progress, source=source, **knobs)
        return self.refiner

    def output_path(self, clip: Path, settings: Mapping[str, Any], taken: Collection[str]) -> Path:
        """`<clip>_<size>.mp4` in the output folder (`-2`, `-3`, ... when it exists or another
        job's output is `taken`).
        """
        size = str(settings.get("size") or self.check(settings).size).strip().lower()
        return free_name(self.folders.outputs / f"{clip.stem}_{size}.mp4", taken)

    def run(self, job: Job, progress: JobProgress) -> int:
        """Refine a queued job's clip into its output; the windows reused from a cancelled run."""
        clip = self.folders.clip(job.input)
        output = self.folders.check(job.output)
        captions = load_captions(self.folders.check(job.captions)) if job.captions else None
        with self.device_lock:
            refiner = self._configured(job.settings, progress)
            result = refiner.upscale(
                clip, output, caption=job.caption, captions=captions, resume=True
            )
        return result.reused_windows

    def auto_captions(self, clip: Path, settings: Mapping) -> tuple[CaptionCue, ...]:
        """One caption per shot of `clip` (shots cut as the settings' preset says), from the
        captioner loaded for it alone, as `vidrefine caption` does (waits for the device).
        """
        from vidrefine.captioners.clip import caption_clip
        from vidrefine.pipeline.devices import device_facts
        from vidrefine.plan.memory import plan_captioner

        config = self.check(settings)
        info = probe(clip)
        shots = planned_shots(info, config)
        device = self.refiner.session.device
        with self.device_lock:
            facts = device_facts(device)
            return caption_clip(
                clip,
                shots=shots,
                info=info,
                captioner=self.captioner,
                weights_dir=self.weights,
                offline=self.offline,
                device=device,
                fits=lambda captioner: plan_captioner(captioner.memory_gb, facts, config.vram_gb),
            )

    def preview(self, clip: Path, at_s: float, caption: str, settings: Mapping) -> Preview:
        """One window of `clip` at `at_s`, refined (waits while a job holds the device)."""
        self.check(settings)  # a bad setting fails at once, not after the running job
        with self.device_lock:
            refiner = self._configured(settings, None)
            return refiner.preview(clip, at_s, caption=caption, folder=self.folders.previews)

    def previews(self, prompts: list[str], seeds: list[int], settings: Mapping) -> list[Path]:
        """Stage-I previews of every prompt and seed, in a new folder under the work folder.

        Each gets its sidecar caption, so committing one is an upscale job like any other.
        """
        from vidrefine.pipeline.t2v import generate_videos

        config = self.check(settings)
        folder = self.folders.t2v / secrets.token_hex(4)
        with self.device_lock:
            jobs = generate_videos(
                prompts,
                seeds,
                config,
                output_dir=folder,
                preview_only=True,
                generator=self.generator,
                weights_dir=self.weights,
                offline=self.offline,
                device=self.refiner.session.device,
            )
        return [job.preview for job in jobs]


def shots_text(shots: tuple[Shot, ...] | None) -> str:
    """'3 shots (cuts at 2.40 s, 5.00 s)', '1 shot', or why there are none."""
    if shots is None:
        return "not detected (the preset turns shot detection off)"
    cuts = ", ".join(f"{shot.start_s:.2f} s" for shot in shots[1:])
    return f"{len(shots)} shot{'s' * (len(shots) != 1)}" + (f" (cuts at {cuts})" if cuts else "")


def facts(info: MediaInfo, shots: str = "finding...") -> str:
    """The clip's facts as one Markdown line: size, fps, frames, duration, audio, shots."""
    height, width = info.display_hw
    audio = ", ".join(f"{a.codec} {a.channels} ch" for a in info.audio) or "none"
    return (
        f"**{info.path.name}**: {width}x{height}, {float(info.fps):.3g} fps"
        f"{' (variable)' if info.is_vfr else ''}, {info.frame_count} frames, "
        f"{info.duration_s:.2f} s, audio: {audio}, shots: {shots}"
    )


def clip_facts(clip: Path) -> tuple[MediaInfo, str]:
    """Probe `clip` once: its MediaInfo and the facts line."""
    info = probe(clip)
    return info, facts(info)


__all__ = [
    "NO_ADAPTER",
    "PRESET_ADAPTERS",
    "SETTING_KEYS",
    "Engine",
    "clip_facts",
    "facts",
    "shots_text",
]
