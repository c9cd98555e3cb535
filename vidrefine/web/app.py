"""The page's layout: settings, then Upscale (clip, facts, caption, preview, refine), Text to
video (prompts, seeds, previews to tick) and Jobs tabs; every action is a named endpoint
(`api_name`), so `gradio_client` can drive it too (docs/web.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from vidrefine.config import COLOR_FIXES
from vidrefine.web.handlers import ClipView, Page, PageError

POLL_S = 0.5  # how often the page asks for the job list
VIDEO_HEIGHT = 240  # pixels: the page fits one screen
CAPTION_LABEL = "Caption: one paragraph, or SRT (one caption per shot, as in CLIP.captions.srt)"
PRIVATE = {"api_visibility": "private"}  # page plumbing, not part of the scripting API


def gradio_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Show a handler's PageError as Gradio's error (a toast in the page, AppError in a client)."""

    def wrapper(*args: Any) -> Any:
        try:
            return func(*args)
        except PageError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def clip_outputs(page: Page, view: ClipView) -> tuple[Any, ...]:
    """(clip path, facts, caption, preview time, choices) for a chosen clip."""
    at = gr.update(value=0, label=f"Preview at (s, 0 to {view.duration_s:.2f})")
    choices = gr.update(choices=page.folders.choices(), value=view.path)
    return view.path, view.facts, view.caption, at, choices


def settings_controls(page: Page) -> list[Any]:
    """Preset, size, strength, steps, seed, colour fix (filled from the server's preset), then
    the adapter and its strength (`SETTINGS` order).
    """
    config = page.defaults()
    with gr.Row(equal_height=True):
        preset = gr.Dropdown(page.presets(), value=page.engine.preset, label="Preset")
        size = gr.Textbox(
            config.size, label="Size", placeholder="1080p, 720p or WIDTHxHEIGHT", elem_id="size"
        )
        strength = gr.Slider(600, 750, value=config.strength, step=1, label="Strength")
        steps = gr.Number(config.steps, precision=0, minimum=1, label="Steps")
        seed = gr.Number(config.seed, precision=0, label="Seed", elem_id="seed")
        color_fix = gr.Dropdown(list(COLOR_FIXES), value=config.color_fix, label="Colour fix")
    knobs = [size, strength, steps, seed, color_fix]

    def preset_defaults(name: str) -> list[Any]:
        cfg = page.defaults(name)
        return [cfg.size, cfg.strength, cfg.steps, cfg.seed, cfg.color_fix]

    preset.input(preset_defaults, preset, knobs, **PRIVATE)
    return [preset, *knobs, *adapter_controls(page)]


def adapter_controls(page: Page) -> list[Any]:
    """A tuned adapter (LoRA) from `serve --adapters DIR`, and its strength."""
    with gr.Row(equal_height=True):
        adapter = gr.Dropdown(
            page.adapters(),
            value=page.adapters()[0],
            label="Adapter (LoRA)",
            allow_custom_value=True,  # a file added since start; the engine checks every name
            elem_id="adapter",
        )
        scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="Adapter strength")
    return [adapter, scale]


def follow_size(page: Page, notice: Any, size: Any, clip: Any) -> None:
    """Keep the warning line for a size too large for the device up to date."""
    for changed in (size, clip):
        changed.change(page.size_notice, [size, clip], notice, **PRIVATE)


def upscale_tab(page: Page, settings: list[Any]) -> dict[str, Any]:
    """The Upscale tab; returns the components the jobs refresh needs."""
    with gr.Row():
        with gr.Column():
            upload = gr.Video(
                label="Clip", sources=["upload"], height=VIDEO_HEIGHT, elem_id="clip-upload"
            )
            choose = gr.Dropdown(
                page.folders.choices(), label="or choose a clip", allow_custom_value=True
            )
            clip = gr.Textbox(label="Clip path", interactive=False, elem_id="clip-path")
            facts = gr.Markdown(elem_id="clip-facts")
        with gr.Column():
            caption = gr.Textbox(label=CAPTION_LABEL, lines=8, elem_id="caption")
            auto_btn = gr.Button("Auto caption (one per shot)", elem_id="auto-caption")
    with gr.Row():
        # a number, not a slider: a slider's maximum would stay in the API's schema (and its
        # checks) at the first clip's length, whatever clip a script previews
        at = gr.Number(0, minimum=0, step=0.04, label="Preview at (s)", elem_id="preview-at")
        preview_btn = gr.Button("Preview", elem_id="preview-button")
    with gr.Row():
        before = gr.Video(
            label="Input", interactive=False, height=VIDEO_HEIGHT, elem_id="preview-source"
        )
        after = gr.Video(
            label="Refined", interactive=False, height=VIDEO_HEIGHT, elem_id="preview-refined"
        )
    with gr.Row():
        refine_btn = gr.Button("Refine whole clip", variant="primary", elem_id="refine-button")
        idle = {"interactive": False}  # until the Job box holds a job they apply to
        cancel_btn = gr.Button("Cancel", elem_id="cancel-button", **idle)
        resume_btn = gr.Button("Resume", elem_id="resume-button", **idle)
        compare_btn = gr.Button("Compare with the input", elem_id="compare-button", **idle)
    job = gr.Textbox(label="Job", elem_id="job-id")
    status = gr.Markdown(elem_id="job-status")
    with gr.Row():
        result = gr.Video(
            label="Result", interactive=False, height=VIDEO_HEIGHT, elem_id="result-video"
        )
        download = gr.File(label="Download", interactive=False, elem_id="result-file")
    report = gr.Markdown(elem_id="compare-summary")
    pictures = gr.Gallery(
        label="Compare report", columns=2, height="auto", elem_id="compare-pictures"
    )

    chosen = [clip, facts, caption, at, choose]
    shots = gradio_errors(page.shots)
    upload.upload(
        gradio_errors(lambda p: clip_outputs(page, page.upload(p))), upload, chosen,
        api_name="upload",
    ).success(shots, [clip, settings[0]], facts, api_name="shots")  # fmt: skip
    choose.input(
        gradio_errors(lambda p: clip_outputs(page, page.choose(p))), choose, chosen,
        api_name="choose",
    ).success(shots, [clip, settings[0]], facts, **PRIVATE)  # fmt: skip
    auto_btn.click(
        gradio_errors(page.auto_caption), [clip, *settings], caption, api_name="auto_caption"
    )
    preview_btn.click(
        gradio_errors(page.preview), [clip, caption, at, *settings], [before, after],
        api_name="preview",
    )  # fmt: skip
    refine_btn.click(gradio_errors(page.refine), [clip, caption, *settings], job, api_name="refine")
    cancel_btn.click(gradio_errors(page.cancel), job, status, api_name="cancel")
    resume_btn.click(gradio_errors(page.resume), job, status, api_name="resume")
    compare_btn.click(gradio_errors(page.compare), job, [report, pictures], api_name="compare")
    return {
        "clip": clip,
        "job": job,
        "status": status,
        "result": result,
        "download": download,
        "buttons": [cancel_btn, resume_btn, compare_btn],
    }


def t2v_tab(page: Page, settings: list[Any]) -> None:
    """Text to video: prompts and seeds, a grid of stage-I previews, tick the ones to refine."""
    with gr.Row():
        prompts = gr.Textbox(label="Prompts (one per line)", lines=4, elem_id="t2v-prompts")
        seeds = gr.Textbox("0", label="Seeds (0, 1, 2)", elem_id="t2v-seeds")
    make_btn = gr.Button("Make previews", elem_id="t2v-make")
    gallery = gr.Gallery(label="Previews", columns=4, height="auto", elem_id="t2v-gallery")
    ticked = gr.CheckboxGroup(label="Refine these", elem_id="t2v-ticked")
    commit_btn = gr.Button("Refine ticked previews", variant="primary", elem_id="t2v-commit")
    committed = gr.Textbox(label="Jobs (see the Jobs tab)", elem_id="t2v-jobs")

    def previews(*args: Any) -> tuple[Any, ...]:
        paths = page.t2v_previews(*args)
        names = [(path.rsplit("/", 1)[-1], path) for path in paths]
        return paths, gr.update(choices=names, value=[])

    make_btn.click(
        gradio_errors(previews), [prompts, seeds, *settings], [gallery, ticked],
        api_name="t2v_previews",
    )  # fmt: skip
    commit_btn.click(
        gradio_errors(page.t2v_commit), [ticked, *settings], committed, api_name="t2v_commit"
    )


def jobs_tab(page: Page) -> dict[str, Any]:
    """The Jobs tab: the list (it survives a reload), and remove/download by job id."""
    listing = gr.Markdown(page.listing(), elem_id="jobs")
    with gr.Row():
        chosen = gr.Textbox(label="Job", elem_id="jobs-job-id")
        remove_btn = gr.Button("Remove (deletes the output)", elem_id="remove-button")
        fetch_btn = gr.Button("Download", elem_id="fetch-button")
    removed = gr.Markdown()
    fetched = gr.File(label="Refined clip", interactive=False)
    remove_btn.click(gradio_errors(page.remove), chosen, removed, api_name="remove")
    fetch_btn.click(
        gradio_errors(page.result), chosen, fetched, api_name="result", concurrency_limit=None
    )
    return {"listing": listing}


def build(page: Page) -> gr.Blocks:
    """The whole page."""
    with gr.Blocks(title="vidrefine") as demo:
        gr.Markdown("## vidrefine: low-res clips to 1080p with FlashVideo's stage II")
        gr.Markdown(page.weights_note, elem_id="weights")
        settings = settings_controls(page)
        notice = gr.Markdown(page.size_notice(None), elem_id="size-notice")
        with gr.Tab("Upscale"):
            upscale = upscale_tab(page, settings)
        follow_size(page, notice, settings[1], upscale["clip"])
        with gr.Tab("Text to video"):
            t2v_tab(page, settings)
        with gr.Tab("Jobs"):
            jobs = jobs_tab(page)
        shown = gr.State(None)  # the output the result player shows (not reloaded every poll)

        def refresh(job_id: str, showing: str | None) -> tuple[Any, ...]:
            output = page.finished(job_id)
            same = output is None or output == showing
            media = (gr.skip(), gr.skip()) if same else (output, output)
            buttons = [gr.update(interactive=on) for on in page.job_buttons(job_id)]
            return (page.listing(), page.status(job_id), *media, *buttons, output or showing)

        outputs = [jobs["listing"], upscale["status"], upscale["result"], upscale["download"]]
        outputs += upscale["buttons"]
        timer = gr.Timer(POLL_S)
        timer.tick(refresh, [upscale["job"], shown], [*outputs, shown], **PRIVATE)
        demo.load(refresh, [upscale["job"], shown], [*outputs, shown], **PRIVATE)
    return demo


__all__ = ["build"]
