"""The bundled captioner: Qwen3-VL-2B-Instruct (Apache-2.0) through transformers' native classes.

The frames of a shot go in as one video, as Qwen3-VL was trained to see them: resized to
multiples of 32 pixels (16-pixel patches merged 2x2), normalised, cut into patches two frames
deep, and announced in the prompt by per-step timestamps (`<0.5 seconds>`), so the model sees
motion and camera movement, not a stack of stills. transformers' own video processor does the
same but needs torchvision; this file needs only torch and numpy, and follows its layout
(`Qwen3VLVideoProcessor.patchify`, `Qwen3VLProcessor.replace_video_token`). Generation is
greedy and bounded; docs/captions.md says why this model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from vidrefine.errors import BadCheckpoint, MissingWeights, first_line

WEIGHTS_KEY = "captioner"  # vidrefine.checkpoints.weights.CAPTIONER
SOURCE = "Qwen/Qwen3-VL-2B-Instruct"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
FRAME_PIXELS = 448 * 448  # per frame: 196 merged tokens per two-frame step at 32 px a token
PROMPT = (
    "Describe this video clip in one paragraph of about 120 words, as a caption for a "
    "text-to-video model. Say what the main subject is and what it looks like, what it does "
    "and how it moves, the setting and background, the lighting and colours, and how the "
    "camera frames and moves. Write plain present-tense sentences. Do not use lists, headings "
    "or quotation marks, do not mention frames or timestamps, and do not guess at anything "
    "that cannot be seen."
)


@dataclass(frozen=True)
class VideoSettings:
    """How frames become patches: `video_preprocessor_config.json` of the model folder."""

    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def factor(self) -> int:
        """Pixels per merged token side: frame sides are multiples of this."""
        return self.patch_size * self.merge_size

    @classmethod
    def from_folder(cls, folder: Path) -> VideoSettings:
        """The settings in `folder`, defaults for the keys it does not set."""
        path = folder / "video_preprocessor_config.json"
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = ("patch_size", "temporal_patch_size", "merge_size")
        known: dict[str, Any] = {k: int(data[k]) for k in keys if k in data}
        for key in ("image_mean", "image_std"):
            if key in data:
                known[key] = tuple(float(v) for v in data[key])
        return cls(**known)


def frame_size_hw(height: int, width: int, factor: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) in multiples of `factor`, aspect kept, at most `max_pixels` (and at least
    one merged token each way): Qwen's "smart resize" rule.
    """
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    return h, w


def pack_frames(
    frames: np.ndarray, settings: VideoSettings, size_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H, W, 3) uint8 -> (patches (N, 3 * tp * p * p) float32, grid (1, 3) [t, h, w]).

    The frame count is padded to a multiple of the temporal patch by repeating the last frame;
    patches are ordered step, merged block row, block column, then the 2x2 inside a block.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames)).float()
    video = rearrange(video, "t h w c -> t c h w")
    video = torch.nn.functional.interpolate(
        video, size=size_hw, mode="bicubic", antialias=True, align_corners=False
    )
    mean = torch.tensor(settings.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(settings.image_std).view(1, 3, 1, 1)
    video = (video.clamp(0, 255) / 255 - mean) / std
    tp, m = settings.temporal_patch_size, settings.merge_size
    if pad := -video.shape[0] % tp:
        video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
    patches = rearrange(
        video,
        "(gt tp) c (gh mh ph) (gw mw pw) -> (gt gh gw mh mw) (c tp ph pw)",
        tp=tp,
        mh=m,
        mw=m,
        ph=settings.patch_size,
        pw=settings.patch_size,
    )
    grid = [video.shape[0] // tp, size_hw[0] // settings.patch_size]
    grid.append(size_hw[1] // settings.patch_size)
    return patches.contiguous(), torch.tensor([grid])


def step_times(count: int, fps: float, temporal_patch_size: int) -> list[float]:
    """Seconds of each temporal step: the mean time of the frames it merges (the last frame
    repeated to fill the final step).
    """
    times = [i / fps for i in range(count)]
    times += [times[-1]] * (-count % temporal_patch_size)
    steps = range(0, len(times), temporal_patch_size)
    return [(times[s] + times[s + temporal_patch_size - 1]) / 2 for s in steps]


def expand_video(prompt: str, times: list[float], tokens_per_step: int) -> str:
    """The chat prompt with its one video placeholder replaced by every step: its timestamp,
    then the step's video tokens between vision markers.
    """
    steps = "".join(
        f"<{t:.1f} seconds>{VISION_START}{VIDEO_TOKEN * tokens_per_step}{VISION_END}" for t in times
    )
    if prompt.count(VIDEO_TOKEN) != 1:
        raise BadCheckpoint("the captioner's chat template did not place exactly one video")
    return prompt.replace(VIDEO_TOKEN, steps)


def _chat_template(folder: Path, tokenizer: Any) -> str:
    """The model's chat template: `chat_template.json` (the processor's), else the tokenizer's."""
    path = folder / "chat_template.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["chat_template"]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    raise BadCheckpoint(f"{folder} has no chat template (chat_template.json)")


class Qwen3VLCaptioner:
    """Qwen3-VL-2B-Instruct as a captioner plugin (entry point `qwen3-vl-2b`)."""

    api_version = 1
    name = "qwen3-vl-2b"
    required_weights = (WEIGHTS_KEY,)
    frame_rate = 2.0  # Qwen3-VL's video rate
    max_frames = 16  # a shot longer than 8 s is sampled sparser
    memory_gb = 5.0  # 4.0 GiB of bf16 weights + vision and KV working memory (estimated)

    def __init__(self) -> None:
        """Nothing is loaded until `load`."""
        self._model: Any = None
        self._tokenizer: Any = None
        self._template = ""
        self._settings = VideoSettings()
        self.device = torch.device("cpu")
        self.folder: Path | None = None

    def describe(self) -> dict[str, Any]:
        """The model and the settings that shaped the captions."""
        return {
            "captioner": self.name,
            "source": SOURCE,
            "licence": "Apache-2.0",
            "frame_rate": self.frame_rate,
            "max_frames": self.max_frames,
            "frame_pixels": FRAME_PIXELS,
            "decoding": "greedy",
        }

    def load(self, paths: Mapping[str, Path], *, device: torch.device, dtype: str) -> None:
        """Load the model folder `paths["captioner"]`; never touches the network."""
        from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration
        from transformers.utils import logging as hf_logging

        from vidrefine.runtime.device import torch_dtype

        hf_logging.disable_progress_bar()
        folder = Path(paths[WEIGHTS_KEY])
        if not (folder / "config.json").is_file():
            raise MissingWeights(
                f"captioner folder {folder} has no config.json; fetch it with "
                "`vidrefine download --only captioner`"
            )
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self._model = Qwen3VLForConditionalGeneration.from_pretrained(
                folder, dtype=torch_dtype(dtype), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise BadCheckpoint(
                f"captioner folder {folder} cannot be loaded ({first_line(exc)}); fetch "
                "it again with `vidrefine download --only captioner`"
            ) from exc
        self._model = self._model.to(device).eval().requires_grad_(False)
        self._template = _chat_template(folder, self._tokenizer)
        self._settings = VideoSettings.from_folder(folder)
        self.device, self.folder = torch.device(device), folder

    def _inputs(self, frames: np.ndarray, fps: float) -> dict[str, torch.Tensor]:
        """Token ids, vision patches and their grid for one shot's frames."""
        settings = self._settings
        size_hw = frame_size_hw(*frames.shape[1:3], settings.factor, FRAME_PIXELS)
        patches, grid = pack_frames(frames, settings, size_hw)
        messages = [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}
        ]
        prompt = self._tokenizer.apply_chat_template(
            messages, chat_template=self._template, tokenize=False, add_generation_prompt=True
        )
        tokens_per_step = int(grid[0, 1] * grid[0, 2]) // settings.merge_size**2
        times = step_times(len(frames), fps, settings.temporal_patch_size)
        ids = self._tokenizer(expand_video(prompt, times, tokens_per_step), return_tensors="pt")
        video_id = self._tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        input_ids = ids["input_ids"]
        return {
            "input_ids": input_ids,
            "attention_mask": ids["attention_mask"],
            "mm_token_type_ids": (input_ids == video_id).int() * 2,  # 2: video (M-RoPE)
            "pixel_values_videos": patches.to(self._model.dtype),
            "video_grid_thw": grid,
        }

    @torch.inference_mode()
    def caption(self, frames: np.ndarray, fps: float, *, max_tokens: int) -> str:
        """Greedy decoding of at most `max_tokens` new tokens, special tokens dropped."""
        from transformers import GenerationConfig

        if self._model is None:
            raise RuntimeError("Qwen3VLCaptioner.load() must come before caption()")
        inputs = {k: v.to(self.device) for k, v in self._inputs(frames, fps).items()}
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=self._model.generation_config.eos_token_id,
            pad_token_id=self._tokenizer.pad_token_id,
        )
        output = self._model.generate(**inputs, generation_config=config)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self._tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    def release(self) -> None:
        """Free the weights (device memory included)."""
        import gc

        self._model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
