"""What each endpoint of the page does, in plain Python (no Gradio layout here).

Every path a request names goes through `Folders.check`; every failure becomes the one-line
message the CLI prints (`one_line`), never a stack trace.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vidrefine.captions import Captions, format_srt, sidecar_captions, write_captions
from vidrefine.config import RunConfig
from vidrefine.errors import VidrefineError
from vidrefine.io.probe import probe
from vidrefine.pipeline.shots import planned_shots
from vidrefine.presets import available_presets, load_config
from vidrefine.web.captioning import (
    CAPTIONS_FILE,
    box_captions,
    caption_at,
    prefilled_caption,
)
from vidrefine.web.engine import (
    NO_ADAPTER,
    PRESET_ADAPTERS,
    Engine,
    clip_facts,
    facts,
    shots_text,
)
from vidrefine.web.jobs import ACTIVE, DONE, RESUMABLE, Job, JobQueue, bug_line
from vidrefine.web.notices import size_notice
from vidrefine.web.paths import Folders
from vidrefine.web.report import job_report

F = TypeVar("F", bound=Callable[..., Any])
SETTINGS = ("preset", "size", "strength", "steps", "seed", "color_fix", "adapter", "adapter_scale")


class PageError(Exception):
    """A one-line message for the page (Gradio shows it; `app.py` turns it into gr.Error)."""


def one_line(func: F) -> F:
    """Run an endpoint; any failure leaves it as a PageError holding one line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PageError:
            raise
        except VidrefineError as exc:
            raise PageError(" ".join(str(exc).split())) from None
        except Exception as exc:
            raise PageError(bug_line(exc)) from None

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ClipView:
    """What the page shows once a clip is chosen."""

    path: str
    facts: str
    caption: str
    duration_s: float


def settings_of(values: tuple[Any, ...]) -> dict[str, Any]:
    """The page's setting controls (in `SETTINGS` order) as a dict; blanks left out."""
    out = dict(zip(SETTINGS, values, strict=False))  # a script may leave trailing ones out
    for key in ("strength", "steps", "seed"):
        if out.get(key) not in (None, ""):
            out[key] = int(out[key])
    if out.get("adapter_scale") not in (None, ""):
        out["adapter_scale"] = float(out["adapter_scale"])
    return {k: v for k, v in out.items() if v not in (None, "")}


def prompt_lines(text: str) -> list[str]:
    """One prompt per non-empty line; lines starting with # are comments (as in prompt files)."""
    prompts = [line.strip() for line in (text or "").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise PageError("no prompt: write one prompt per line")
    return prompts


def seed_list(text: str) -> list[int]:
    """'0, 1 2' -> [0, 1, 2]; PageError naming a part that is not a whole number."""
    parts = (text or "0").replace(",", " ").split()
    try:
        return [int(part) for part in parts] or [0]
    except ValueError:
        raise PageError(f"seeds must be whole numbers separated by commas, not {text!r}") from None


class Page:
    """The endpoints, over one engine, one job queue and the two folders."""

    def __init__(
        self, engine: Engine, queue: JobQueue, folders: Folders, *, weights_note: str = ""
    ) -> None:
        self.engine, self.queue, self.folders = engine, queue, folders
        self.weights_note = weights_note  # the weights loaded (`notices.weights_note`)

    def defaults(self, preset: str | None = None) -> RunConfig:
        """The settings a preset gives (the server's preset when None)."""
        return load_config(preset or self.engine.preset, source="the page")

    def adapters(self) -> list[str]:
        """Adapter choices: the preset's (default), none, and each file of `serve --adapters`."""
        return [PRESET_ADAPTERS, NO_ADAPTER, *self.engine.adapter_names()]

    def presets(self) -> list[str]:
        """Preset choices: the built-in ones and the server's own."""
        names = list(available_presets())
        return names if self.engine.preset in names else [self.engine.preset, *names]

    @one_line
    def upload(self, uploaded: str | None) -> ClipView:
        """Keep an uploaded clip in the work folder and show its facts."""
        if not uploaded:
            raise PageError("no file received; drop a video file on the clip box")
        return self.view(self.folders.keep_upload(uploaded, accept=probe))

    @one_line
    def choose(self, path: str | None) -> ClipView:
        """Show a clip already in the work or output folder."""
        return self.view(self.folders.clip(path or ""))

    def view(self, clip: Path) -> ClipView:
        """Facts (shots still to find) and prefilled caption of a checked clip."""
        info, line = clip_facts(clip)
        return ClipView(str(clip), line, prefilled_caption(clip), info.duration_s)

    @one_line
    def shots(self, clip: str, preset: str | None = None) -> str:
        """The clip's facts with its shots, cut as the preset says (one decode of the clip)."""
        info = probe(self.folders.clip(clip))
        return facts(info, shots_text(planned_shots(info, self.defaults(preset))))

    @one_line
    def auto_caption(self, clip: str, *settings: Any) -> str:
        """Caption the clip shot by shot with the captioner; the captions as SRT text (also
        saved as the clip's captions file when it is an upload, to prefill it next time).
        """
        path = self.folders.clip(clip)
        cues = self.engine.auto_captions(path, settings_of(settings))
        if path.parent == self.folders.clips:
            write_captions(sidecar_captions(path), cues)
        return format_srt(cues)

    @one_line
    def preview(self, clip: str, caption: str, at_s: float, *settings: Any) -> tuple[str, str]:
        """Refine the window at `at_s` (with the box's cue there); the two clips' paths."""
        path = self.folders.clip(clip)
        at_s = float(at_s or 0)
        made = self.engine.preview(path, at_s, caption_at(caption, at_s), settings_of(settings))
        return str(made.source), str(made.refined)

    @one_line
    def refine(self, clip: str, caption: str, *settings: Any) -> str:
        """Queue the whole clip; the job's id. SRT in the box becomes the job's captions file."""
        path = self.folders.clip(clip)
        chosen = settings_of(settings)
        self.engine.check(chosen)  # a bad setting fails here, not in the queue
        text, captions = box_captions(caption)
        with self.queue.lock:  # two clicks must not promise one file to two jobs
            taken = {job.output for job in self.queue.jobs.values()}
            output = self.engine.output_path(path, chosen, taken)
            prepare = functools.partial(self._keep_captions, captions)
            return self.queue.submit(path, output, text, chosen, prepare).id

    def _keep_captions(self, captions: Captions | None, job: Job) -> None:
        """Save a job's captions in its folder, before it is listed."""
        if captions is not None:
            target = self.folders.job_folder(job.id) / CAPTIONS_FILE
            write_captions(target, captions.cues)
            job.captions = str(target)

    @one_line
    def compare(self, job_id: str) -> tuple[str, list[str]]:
        """The compare report of a finished job (written into its folder the first time): the
        summary table and the pictures (metrics plot, contact sheets).
        """
        job = self.queue.get(job_id)
        if job.state != DONE:
            raise PageError(f"job {job.id} is {job.state}: a report compares a finished job")
        source, output = self.folders.clip(job.input), self.folders.clip(job.output)
        return job_report(source, output, self.folders.job_folder(job.id))

    @one_line
    def t2v_previews(self, prompts: str, seeds: str, *settings: Any) -> list[str]:
        """Stage-I previews of every prompt line and seed; their paths."""
        made = self.engine.previews(prompt_lines(prompts), seed_list(seeds), settings_of(settings))
        return [str(path) for path in made]

    @one_line
    def t2v_commit(self, previews: list[str], *settings: Any) -> str:
        """Queue the ticked previews for stage II (their captions are their prompts); job ids."""
        if not previews:
            raise PageError("no preview ticked: tick the previews to refine")
        ids = []
        for preview in previews:
            clip = self.folders.clip(preview)
            ids.append(self.refine(str(clip), prefilled_caption(clip), *settings))
        return " ".join(ids)

    @one_line
    def cancel(self, job_id: str) -> str:
        """Cancel a job (a running one stops at its next step, keeping finished windows)."""
        return self.status(self.queue.cancel(job_id).id)

    @one_line
    def resume(self, job_id: str) -> str:
        """Queue a stopped job again; it reuses the windows it finished."""
        return self.status(self.queue.resume(job_id).id)

    @one_line
    def remove(self, job_id: str) -> str:
        """Forget a stopped job and delete its output."""
        self.queue.remove(job_id, self._delete_output)
        return f"job {job_id.strip()} removed"

    def _delete_output(self, job: Job) -> None:
        self.folders.check(job.output).unlink(missing_ok=True)
        shutil.rmtree(self.folders.job_folder(job.id))  # its captions file and report

    @one_line
    def result(self, job_id: str) -> str:
        """Wait for the job to stop; the refined file (a PageError when it did not finish)."""
        job = self.queue.wait(job_id)
        if job.state != DONE:
            raise PageError(f"job {job.id} {job.state}: {job.message}".rstrip(": "))
        return str(self.folders.check(job.output))

    def status(self, job_id: str | None) -> str:
        """One line on a job: state, position in the line, progress, message."""
        job = self.queue.jobs.get((job_id or "").strip())
        if job is None:
            return ""
        position = self.queue.position(job)
        where = f" (#{position} in line)" if job.state == "queued" else ""
        parts = [f"job {job.id}: {job.state}{where}", job.progress_line(), job.message]
        return " | ".join(p for p in parts if p)

    def size_notice(self, size: str | None, clip: str | None = None) -> str:
        """The warning for a size too large for the device (planned for the clip when one is
        chosen), or "".
        """
        size = str(size or self.defaults().size)
        try:
            input_hw = probe(self.folders.clip(clip)).display_hw if clip else None
        except VidrefineError:
            input_hw = None
        return size_notice(size, input_hw, self.engine.refiner.session.device.type)

    def job_buttons(self, job_id: str | None) -> tuple[bool, bool, bool]:
        """Whether Cancel, Resume and Compare apply to the job (none without a job)."""
        job = self.queue.jobs.get((job_id or "").strip())
        state = job.state if job is not None else None
        return state in ACTIVE, state in RESUMABLE, state == DONE

    def listing(self) -> str:
        """The job list as a Markdown table (what the page shows under Jobs)."""
        rows = ["| job | clip | state | line | progress | message |", "|---|---|---|---|---|---|"]
        places = self.queue.positions()
        for job in self.queue.listing():
            position = places.get(job.id, "")
            message = job.message.replace("|", "/")
            cells = (job.id, Path(job.input).name, job.state, position, job.progress_line())
            rows.append("| " + " | ".join(map(str, (*cells, message))) + " |")
        return "\n".join(rows) if len(rows) > 2 else "No jobs yet."

    def finished(self, job_id: str | None) -> str | None:
        """The output of a job that is done, else None."""
        job = self.queue.jobs.get((job_id or "").strip())
        return job.output if job is not None and job.state == DONE else None


__all__ = ["SETTINGS", "ClipView", "Page", "PageError", "one_line", "settings_of"]
