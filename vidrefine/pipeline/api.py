"""The Python API: `Refiner.from_pretrained(...)` then `upscale`, `upscale_many` or `stream`.

A thin layer over the same pieces the CLI uses (presets, the weight search path, one plan per
clip, `StageTwoSession`); models load on first use and stay loaded between calls.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidrefine.captions import Captions
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput, VidrefineError
from vidrefine.pipeline.batch import JobFailure, StageTwoSession, prepare_jobs
from vidrefine.pipeline.devices import device_facts
from vidrefine.pipeline.outputs import check_job_outputs
from vidrefine.pipeline.preview import Preview, preview_clip
from vidrefine.pipeline.refine import JobResult, RefineJob
from vidrefine.pipeline.stderr_progress import chosen_progress
from vidrefine.pipeline.steps import stage2_caption
from vidrefine.plan.clip import ClipPlan, SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.model_sizes import ModelSizes
from vidrefine.plan.windows import WindowPlan
from vidrefine.progress import Progress
from vidrefine.runtime.device import pick_device

PathLike = str | Path
ProgressChoice = Progress | bool | None  # None or True: bars on stderr; False: silent


class Refiner:
    """FlashVideo's stage-II refiner with its weights resolved: low-res clips in, 1080p out."""

    def __init__(
        self,
        paths: Mapping[str, Path],
        config: RunConfig,
        *,
        device: torch.device | str | None = None,
        progress: ProgressChoice = None,
    ) -> None:
        """Use the weight files in `paths` (3d-vae.pt, stage2.pt, t5-v1_1-xxl) and `config`.

        `device`: "cpu", "cuda" or "cuda:N" (None: the first GPU, else the CPU); one this
        machine does not have is BadInput here, before any loading. `progress`: bars and notes
        on stderr by default, `False` for none, or a `vidrefine.progress.Progress` to receive
        them.
        """
        device = pick_device(device) if device is not None else None
        self.config = config
        self.session = StageTwoSession(
            paths, config, device=device, progress=chosen_progress(progress)
        )

    @classmethod
    def from_pretrained(
        cls,
        weights: PathLike | None = None,
        preset: str = "default",
        *,
        offline: bool = False,
        device: torch.device | str | None = None,
        progress: ProgressChoice = None,
        **settings: Any,
    ) -> Refiner:
        """Find (or fetch) the official weights and build the config: defaults < preset < settings.

        `weights` is a folder searched first (None: $VIDREFINE_WEIGHTS, then the user cache);
        `settings` are `RunConfig` keys (e.g. `size="720p"`, `steps=5`), checked like flags;
        `lora` may be one adapter file, or a list of files, "FILE:SCALE" strings or
        (file, scale) pairs. `device` and `progress` as for `Refiner`. Raises MissingWeights
        naming every missing file when they cannot be had.
        """
        from vidrefine.checkpoints.weights import UPSCALE_WEIGHTS, resolve
        from vidrefine.presets import load_config

        settings = lora_setting(settings)
        config = load_config(preset, settings, source="Refiner.from_pretrained")
        folder = Path(weights).expanduser() if weights is not None else None
        paths = resolve(UPSCALE_WEIGHTS, weights_dir=folder, offline=offline)
        return cls(paths, config, device=device, progress=progress)

    def configured(
        self,
        preset: str = "default",
        *,
        progress: ProgressChoice = None,
        source: str = "Refiner.configured",
        **settings: Any,
    ) -> Refiner:
        """A Refiner with other settings (defaults < preset < settings) on the same weights.

        It shares this one's loaded models and encoded captions: only a plan that places the
        models differently (another precision or streaming choice) loads them again. `source`
        names where the settings came from in error messages; `progress` as for `Refiner`.
        """
        from vidrefine.presets import load_config

        config = load_config(preset, lora_setting(settings), source=source)
        session = self.session
        other = Refiner(session.paths, config, device=session.device, progress=progress)
        other.session.share_loaded(session)
        return other

    def preview(self, input: PathLike, at_s: float, *, caption: str, folder: PathLike) -> Preview:
        """Refine the one window of `input` that starts at `at_s` (seconds); write the source
        and refined frames as two short clips into `folder` (what the page shows side by side).
        """
        # the window length follows from the settings alone: no probe or shot detection
        window_frames = WindowPlan(
            self.config.window_latent, self.config.window_overlap_latent
        ).frames

        def refine(frames: np.ndarray, info: Any) -> Iterator[np.ndarray]:
            return self.stream(frames, caption=caption, fps=info.fps)

        return preview_clip(refine, Path(input), window_frames, at_s, Path(folder))

    def upscale(
        self,
        input: PathLike,
        output: PathLike,
        *,
        caption: str,
        captions: Captions | None = None,
        overwrite: bool = False,
        resume: bool = True,
        parallel: str = "auto",
    ) -> JobResult:
        """Refine one clip file into `output` (audio and timing kept); raises on failure.

        `captions`: a captions file read (`vidrefine.captions.load_captions`), one caption per
        shot; `caption` then serves the shots its cues leave empty. Under torchrun every rank
        calls this with the same clip; `parallel` ("auto" is "windows" there) says how they
        share it (docs/distributed.md).
        """
        job = RefineJob(Path(input), Path(output), caption, captions)
        (result,) = self._refine([job], overwrite=overwrite, resume=resume, parallel=parallel)
        if isinstance(result, JobFailure):
            raise result.cause or VidrefineError(result.error)
        return result

    def upscale_many(
        self,
        jobs: Iterable[tuple[PathLike, PathLike, str]],
        *,
        overwrite: bool = False,
        resume: bool = True,
        parallel: str = "auto",
    ) -> list[JobResult | JobFailure]:
        """Refine many (input, output, caption) clips with the models loaded once.

        Every output is checked first: one that is not .mp4, .mkv or .mov, two jobs writing one
        file, one that cannot be written, or one that exists (without `overwrite`) and was not
        made by vidrefine with these same settings raise before any work; one made with the
        same settings is returned as a skipped result. An input that
        cannot be read, or a clip that fails while refining, is returned as a JobFailure and
        the others go on.

        Under torchrun every rank calls this with the same jobs and gets every outcome back:
        `parallel` is one of "auto", "files", "windows", "guidance", "sequence" and
        "guidance+sequence" (docs/distributed.md); in a single process it changes nothing.
        """
        refine_jobs = [RefineJob(Path(i), Path(o), c) for i, o, c in jobs]
        return self._refine(refine_jobs, overwrite=overwrite, resume=resume, parallel=parallel)

    def _refine(
        self, jobs: list[RefineJob], *, overwrite: bool, resume: bool, parallel: str
    ) -> list[JobResult | JobFailure]:
        check_job_outputs((job.input, job.output) for job in jobs)  # the CLI's rules, first
        prepared = prepare_jobs(jobs, overwrite=overwrite)
        return self.session.refine(prepared, overwrite=overwrite, resume=resume, parallel=parallel)

    @property
    def sizes(self) -> ModelSizes:
        """The sizes of the weight files found (read once): what the memory plans are made of."""
        return self.session.sizes

    def plan(self, frame_count: int, size_hw: tuple[int, int], fps: Fraction) -> ClipPlan:
        """The plan of frames in memory: `frame_count` frames of `size_hw` at `fps`.

        Sized for the weights found and this machine: on the CPU a run that does not fit the
        memory free is DoesNotFit, before any model loads.
        """
        source = SourceFacts(tuple(size_hw), frame_count, Fraction(fps), 1 / Fraction(fps))
        return plan_clip(source, self.config, self._device_facts())

    def plan_file(self, path: PathLike) -> ClipPlan:
        """The plan `upscale` runs for the file at `path` (what `vidrefine info --plan` shows)."""
        from vidrefine.io.probe import probe
        from vidrefine.pipeline.shots import clip_source

        source = clip_source(probe(path), self.config)  # shots detected as `upscale` does
        return plan_clip(source, self.config, self._device_facts())

    def _device_facts(self) -> DeviceFacts:
        return device_facts(self.session.device, self.sizes)

    def stream(
        self,
        frames: Iterable[np.ndarray],
        *,
        caption: str,
        frame_count: int | None = None,
        fps: Fraction = Fraction(24),
    ) -> Iterator[np.ndarray]:
        """Refine frames held in memory: uint8 (H, W, 3) frames (or (T, H, W, 3) pieces) in,
        refined uint8 frames out, one at a time. Memory holds about one window of frames.

        `frame_count` plans the windows; it may be left out for an array or a list of frames,
        whose count it must then match. Every frame has the first one's size. BadInput names
        the frame that breaks either rule when it arrives (a count the frames contradict:
        before any work for an array or list, at the extra frame or the early end for an
        iterator). `fps` only times the plan (the frames come out in order, without
        timestamps).
        """
        frame_count = _checked_count(frames, frame_count)
        pieces = _pieces(frames, frame_count)
        first = next(pieces, None)
        if first is None:
            return
        plan = self.plan(frame_count, first.shape[1:3], fps)
        self.session.progress.info(plan.line())
        refiner = self.session.refiner(plan.models, [stage2_caption(self.config, caption)])
        chunks = _with_pts(itertools.chain([first], pieces))
        for out, _pts in refiner.stream(chunks, plan, caption):
            yield from out


def _count(frames: Iterable[np.ndarray]) -> int | None:
    """Frames in an array or a list of frames or pieces; None for an iterator."""
    if isinstance(frames, np.ndarray):
        return len(frames) if frames.ndim == 4 else 1
    if isinstance(frames, Sequence):
        return sum(1 if np.ndim(f) == 3 else len(f) for f in frames)
    return None


def _checked_count(frames: Iterable[np.ndarray], frame_count: int | None) -> int:
    """`frame_count`, or the frames' own count; BadInput when they disagree or it is < 1."""
    counted = _count(frames)
    if frame_count is None:
        if counted is None:
            raise BadInput("stream() needs frame_count= when the frames come from an iterator")
        return counted
    if isinstance(frame_count, bool) or not isinstance(frame_count, int) or frame_count < 1:
        raise BadInput(f"stream(): frame_count={frame_count!r} must be a whole number >= 1")
    if counted is not None and counted != frame_count:
        raise BadInput(f"stream(): frame_count={frame_count}, but {counted} frames were given")
    return frame_count


def _size(hw: tuple[int, ...]) -> str:
    return f"{hw[1]}x{hw[0]}"


def _pieces(frames: Iterable[np.ndarray], frame_count: int) -> Iterator[np.ndarray]:
    """Frames as (T, H, W, 3) pieces, each checked as it arrives: its type, its size against
    the first frame's, and the count so far against `frame_count`.
    """
    first_hw: tuple[int, ...] | None = None
    seen = 0
    for item in frames:
        array = np.asarray(item)
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise BadInput(
                f"stream() takes uint8 RGB frames (H, W, 3) or (T, H, W, 3), not {array.dtype} "
                f"{array.shape}"
            )
        piece = array[None] if array.ndim == 3 else array
        first_hw = first_hw or piece.shape[1:3]
        if piece.shape[1:3] != first_hw:
            raise BadInput(
                f"stream(): frame {seen} is {_size(piece.shape[1:3])}, frame 0 was "
                f"{_size(first_hw)}; every frame of one stream must have one size"
            )
        if seen + len(piece) > frame_count:
            raise BadInput(
                f"stream(): frame_count={frame_count}, but frame {frame_count} (one more) came; "
                "pass the number of frames the iterable yields"
            )
        seen += len(piece)
        yield piece
    if seen < frame_count:
        raise BadInput(f"stream(): frame_count={frame_count}, but the frames ended after {seen}")


def _with_pts(pieces: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    start = 0
    for piece in pieces:
        yield piece, np.arange(start, start + len(piece), dtype=np.int64)
        start += len(piece)


__all__: Sequence[str] = ["Refiner"]


def lora_setting(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with a `lora` given as a file, files or (file, scale) pairs made the
    "FILE[:SCALE]" strings of `RunConfig.lora`.
    """
    value = settings.get("lora")
    if value is None or isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return settings
    one_pair = isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, float))
    items = [value] if one_pair or isinstance(value, (str, os.PathLike)) else list(value)
    specs = tuple(f"{v[0]}:{v[1]}" if isinstance(v, (tuple, list)) else str(v) for v in items)
    return {**settings, "lora": specs}
