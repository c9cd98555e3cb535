"""Text to video: a generator plugin makes low-res previews, stage II refines them (spec §1, §9.2).

Order of work, so that no two large models share the device: T5 encodes every prompt once and is
freed; the generator makes every preview, keeping each clip's unquantised float frames in a
scratch file, and is freed; then stage II refines each clip from those float frames (pitfall 18),
never from the compressed preview.

Under torchrun the (prompt, seed) clips are handed out dynamically: each rank generates the
clips it draws, then refines those same clips; rank 0 writes the one manifest at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidrefine.config import RunConfig, replace
from vidrefine.errors import BadInput, OutputExists
from vidrefine.io.writer import VideoWriter
from vidrefine.pipeline.devices import device_facts
from vidrefine.pipeline.frames import frames_source, refine_frames
from vidrefine.pipeline.loading import (
    encode_captions,
    load_stage_two,
    lora_specs,
    with_adapters,
)
from vidrefine.pipeline.refine import ClipRefiner, RefineJob
from vidrefine.pipeline.steps import stage2_caption
from vidrefine.pipeline.t2v_manifest import manifest_path, record_clip
from vidrefine.plan.clip import ClipPlan, SourceFacts, plan_clip
from vidrefine.plugins import Generator, check_generator, create_generator, discover_generators
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.distributed import (
    RankInfo,
    barrier,
    gather_to_main,
    hand_out,
    init_distributed,
    local_main_first,
    rank_device,
)

SCRATCH_DIR = ".t2v-frames"  # float frames between stage I and stage II, removed when done
PREVIEW_CRF = 14  # the notebook's stage-I quality (spec §9.3); previews are small


@dataclass(frozen=True)
class T2VJob:
    """One (prompt, seed) pair and the files it produces."""

    prompt_number: int  # 1-based line of the prompt list
    prompt: str
    seed: int
    preview: Path
    output: Path | None  # None with --preview-only

    @property
    def stem(self) -> str:
        """`p001_seed0`: the prompt number and seed every file of this clip is named by."""
        return clip_stem(self.prompt_number, self.seed)


def clip_stem(prompt_number: int, seed: int) -> str:
    """File-name stem of one clip: prompt number (3 digits) and seed."""
    return f"p{prompt_number:03d}_seed{seed}"


def plan_t2v_jobs(
    prompts: Sequence[str],
    seeds: Sequence[int],
    output_dir: Path,
    *,
    size: str,
    preview_only: bool,
    overwrite: bool,
) -> list[T2VJob]:
    """Every prompt x seed, with its file names checked before any work (prompt-major order)."""
    jobs = []
    for number, prompt in enumerate(prompts, start=1):
        for seed in seeds:
            stem = clip_stem(number, seed)
            preview = output_dir / f"{stem}_preview.mp4"
            output = None if preview_only else output_dir / f"{stem}_{size.strip().lower()}.mp4"
            for path in (preview, output):
                if path is not None and path.exists() and not overwrite:
                    raise OutputExists(f"{path} exists; pass --overwrite to replace it")
            jobs.append(T2VJob(number, prompt, seed, preview, output))
    return jobs


@dataclass
class T2VRun:
    """What a t2v call needs besides the jobs (so that the steps below take one argument)."""

    config: RunConfig
    plan: ClipPlan  # stage II of one clip; its placement serves T5, stage I and stage II
    output_dir: Path
    weights_dir: Path | None
    offline: bool
    overwrite: bool
    progress: Progress
    device: torch.device
    ranks: RankInfo = RankInfo()
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # manifest, by preview

    def record(self, entry: dict[str, Any]) -> None:
        """Keep a clip's manifest entry; a single process writes it to the manifest at once."""
        self.entries[entry["preview"]] = entry
        if not self.ranks.distributed:
            record_clip(manifest_path(self.output_dir), entry)


def generate_videos(
    prompts: Sequence[str],
    seeds: Sequence[int],
    config: RunConfig,
    *,
    output_dir: Path,
    preview_only: bool = False,
    generator: str | Generator = "flashvideo-stage1",
    weights_dir: Path | None = None,
    offline: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> list[T2VJob]:
    """Write a preview per prompt and seed, then (unless `preview_only`) its refined version.

    `generator` is a registered plugin's name, or a `Generator` object (Python API: no
    registration needed). Returns the jobs; `t2v-manifest.json` in `output_dir` records each clip
    as it is written (under torchrun: by rank 0 once every rank is done).
    """
    progress = progress or NullProgress()
    device = device or rank_device()
    ranks = init_distributed(device.type)
    plugin = _plugin(generator, progress)
    plan = plan_t2v(plugin, config, device)  # before any weight loads; DoesNotFit stops here
    lora_specs(config)  # and the LoRA files are there
    progress.info(plan.line())
    run = T2VRun(config, plan, output_dir, weights_dir, offline, overwrite, progress, device, ranks)
    jobs = plan_t2v_jobs(
        prompts,
        seeds,
        output_dir,
        size=config.size,
        preview_only=preview_only,
        overwrite=overwrite,
    )
    plugin.configure(config)
    with local_main_first():  # one download per machine
        paths = _resolve_weights(plugin, run, preview_only)
    states = _encode_prompts(jobs, paths, run)
    output_dir.mkdir(parents=True, exist_ok=True)
    scratch = _scratch_folder(output_dir, ranks)
    barrier()  # every rank has checked the outputs before any rank writes one
    try:
        mine = (job for _, job in hand_out(jobs)) if ranks.distributed else jobs
        fps = _make_previews(plugin, mine, states, run, scratch if not preview_only else None)
        if not preview_only:
            _refine_all([j for j in jobs if j.stem in fps], states, paths, run, scratch, fps)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if ranks.distributed:
        _write_manifest(run)
    return jobs


def _scratch_folder(output_dir: Path, ranks: RankInfo) -> Path:
    """Where a rank keeps its float frames: each rank its own folder under torchrun."""
    scratch = output_dir / SCRATCH_DIR
    return scratch / f"rank{ranks.rank}" if ranks.distributed else scratch


def _write_manifest(run: T2VRun) -> None:
    """Under torchrun: rank 0 records every rank's clips in the one manifest, once all are done."""
    every = gather_to_main(run.entries)
    if every is None:
        return
    with contextlib.suppress(OSError):  # the ranks have emptied their scratch folders by now
        (run.output_dir / SCRATCH_DIR).rmdir()
    path = manifest_path(run.output_dir)
    for entries in every:
        for entry in entries.values():
            record_clip(path, entry)


def plan_t2v(plugin: Generator, config: RunConfig, device: torch.device) -> ClipPlan:
    """The stage-II plan of one generated clip, with the generator's DiT as a "stage I" phase."""
    stage1 = None
    if plugin.dit_config is not None:
        frames, _channels, h, w = plugin.latent_shape()
        p = plugin.dit_config.patch_size
        stage1 = (plugin.dit_config, frames * (h // p) * (w // p) + plugin.dit_config.text_length)
    fps = Fraction(plugin.fps)
    source = SourceFacts(tuple(plugin.size_hw), plugin.num_frames, fps, 1 / fps)
    return plan_clip(source, config, device_facts(device), stage1=stage1)


def _plugin(generator: str | Generator, progress: Progress) -> Generator:
    if not isinstance(generator, str):
        problem = check_generator(type(generator).__name__, generator)
        if problem is not None:
            raise BadInput(problem)
        return generator
    return create_generator(generator, entries=discover_generators(progress.warn))


def _resolve_weights(plugin: Generator, run: T2VRun, preview_only: bool) -> dict[str, Path]:
    """Fetch what is missing up front: T5, the generator's files, and stage II's unless previews."""
    from vidrefine.checkpoints.weights import BY_KEY, T5, UPSCALE_WEIGHTS, resolve

    wanted = [T5, *(BY_KEY[key] for key in plugin.required_weights)]
    if not preview_only:
        wanted.extend(UPSCALE_WEIGHTS)
    announce = run.progress.info
    return resolve(wanted, weights_dir=run.weights_dir, offline=run.offline, announce=announce)


def _encode_prompts(
    jobs: Sequence[T2VJob], paths: dict[str, Path], run: T2VRun
) -> dict[str, torch.Tensor]:
    """T5 states for every prompt (and its stage-II form), one T5 load, freed afterwards."""
    from vidrefine.checkpoints.weights import T5

    captions = [job.prompt for job in jobs]
    captions += [stage2_caption(run.config, job.prompt) for job in jobs if job.output]
    return encode_captions(paths[T5.name], captions, run.plan.models, run.device, run.progress)


def _make_previews(
    plugin: Generator,
    jobs: Iterable[T2VJob],
    states: dict[str, torch.Tensor],
    run: T2VRun,
    scratch: Path | None,
) -> dict[str, Fraction]:
    """Generate every clip; write its preview, sidecar caption and (for stage II) float frames.

    `jobs` may be handed out while this runs (torchrun). Returns each clip's frame rate by stem.
    """
    rates: dict[str, Fraction] = {}
    total = len(jobs) if isinstance(jobs, Sequence) else None
    plugin.load(run.weights_dir, device=run.device, placement=run.plan.models)
    try:
        with run.progress.task("previews", total=total, unit="clip") as bar:
            for job in jobs:
                clip = plugin.generate(states[job.prompt], job.seed, progress=run.progress)
                write_frames(job.preview, clip.preview, clip.fps, overwrite=run.overwrite)
                job.preview.with_suffix(".txt").write_text(job.prompt + "\n", encoding="utf-8")
                if scratch is not None:
                    scratch.mkdir(parents=True, exist_ok=True)
                    np.save(scratch / f"{job.stem}.npy", clip.frames.astype(np.float32))
                run.record(_manifest_entry(job, plugin))
                rates[job.stem] = Fraction(clip.fps)
                bar.advance()
    finally:
        plugin.release()
    return rates


def _manifest_entry(job: T2VJob, plugin: Generator) -> dict[str, Any]:
    """A clip's manifest entry once its preview exists; `output` is filled in by stage II."""
    return {
        "prompt_number": job.prompt_number,
        "prompt": job.prompt,
        "seed": job.seed,
        "preview": job.preview.name,
        "output": None,
        "generator": {"name": plugin.name, "settings": plugin.describe()},
        "stage2": None,
    }


def write_frames(path: Path, frames: np.ndarray, fps: Fraction, *, overwrite: bool) -> None:
    """Write uint8 frames (T, H, W, 3) at a constant `fps` (pts = frame index)."""
    height, width = frames.shape[1:3]
    with VideoWriter(
        path,
        size_hw=(height, width),
        time_base=1 / Fraction(fps),
        fps=Fraction(fps),
        crf=PREVIEW_CRF,
        overwrite=overwrite,
    ) as writer:
        writer.write(frames, np.arange(len(frames), dtype=np.int64))


def _refine_all(
    jobs: Sequence[T2VJob],
    states: dict[str, torch.Tensor],
    paths: dict[str, Path],
    run: T2VRun,
    scratch: Path,
    rates: dict[str, Fraction],
) -> None:
    """Stage II for every clip from its float frames; the models are loaded once."""
    from vidrefine.pipeline.resume import files_identity

    lora = lora_specs(run.config)
    models = load_stage_two(paths, run.plan.models, run.device, lora)
    identity = files_identity(with_adapters(paths, lora))
    files = {name: str(path) for name, path in paths.items()}
    with run.progress.task("refine", total=len(jobs), unit="clip") as bar:
        for job in jobs:
            if job.output is None:
                continue
            frames_file = scratch / f"{job.stem}.npy"
            config = replace(run.config, seed=job.seed)  # stage II noise follows the clip's seed
            frames = np.load(frames_file, mmap_mode="r")
            plan = plan_clip(
                frames_source(frames, rates[job.stem]),
                config,
                run.plan.device,
                offload=run.plan.models.offload,
            )
            refiner = ClipRefiner(
                models, config, states.__getitem__, progress=run.progress, weights_identity=identity
            )
            refine_frames(
                refiner, plan, frames, RefineJob(job.preview, job.output, job.prompt), run.overwrite
            )
            frames_file.unlink()
            entry = dict(run.entries[job.preview.name])
            entry["output"] = job.output.name
            entry["stage2"] = {"config": dataclasses.asdict(config), "model_files": files}
            run.record(entry)
            bar.advance()
