"""Output picture geometry: target size from `--size`, aspect kept by padding, never stretched.

The DiT needs latent sizes divisible by its 2x2 patch, i.e. pixel sizes divisible by 16. The
original stretches to (1072, 1920) (flashvideo-spec §10.1); by default vidrefine resizes with the
aspect kept, pads to a multiple of 16 and crops the result back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vidrefine.errors import BadInput

MODEL_MULTIPLE = 16  # 8x VAE downsampling times the DiT's 2x2 patch
_NAMED_SHORT_SIDES = {"480p": 480, "540p": 540, "720p": 720, "1080p": 1080, "1440p": 1440}
_SHORT_SIDE = re.compile(r"^\s*(\d+)p\s*$")
_WXH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


@dataclass(frozen=True)
class SizeRequest:
    """What the user asked for: a short side (aspect kept) or an exact (height, width)."""

    short_side: int | None = None
    exact_hw: tuple[int, int] | None = None


@dataclass(frozen=True)
class OutputGeometry:
    """How a frame of `input_hw` becomes model input and output.

    The frame is resized to `resize_hw`, padded at the bottom/right to `model_hw` (multiples of 16)
    for the models, and the model's result is cropped back to `output_hw` (== resize_hw).
    """

    input_hw: tuple[int, int]
    resize_hw: tuple[int, int]
    model_hw: tuple[int, int]

    @property
    def output_hw(self) -> tuple[int, int]:
        """Size of the written frames."""
        return self.resize_hw

    @property
    def latent_hw(self) -> tuple[int, int]:
        """Latent grid of the padded model input (8x VAE downsampling)."""
        return self.model_hw[0] // 8, self.model_hw[1] // 8


def parse_size(text: str) -> SizeRequest:
    """Parse `--size`: "1080p"-style short sides, or "WIDTHxHEIGHT" (converted to (h, w))."""
    key = text.strip().lower()
    if key in _NAMED_SHORT_SIDES:
        return SizeRequest(short_side=_NAMED_SHORT_SIDES[key])
    match = _SHORT_SIDE.match(key)
    if match:
        short = int(match.group(1))
        if not 64 <= short <= 4320:
            raise BadInput(f"--size {text}: the short side must be between 64p and 4320p")
        return SizeRequest(short_side=short)
    match = _WXH.match(key)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if not (64 <= width <= 8192 and 64 <= height <= 8192):
            raise BadInput(f"--size {text}: width and height must be between 64 and 8192")
        return SizeRequest(exact_hw=(height, width))
    names = ", ".join(_NAMED_SHORT_SIDES)
    raise BadInput(f"--size {text!r} is not a size; use {names} (any Np) or WIDTHxHEIGHT")


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_geometry(input_hw: tuple[int, int], size: str, *, aspect: str = "keep") -> OutputGeometry:
    """Choose resize and model sizes for an input of `input_hw` (display orientation).

    `aspect="keep"` scales so the short side matches (even sizes, for yuv420p) and pads to 16.
    `aspect="stretch"` resizes straight to the request rounded down to 16, as the original does.
    """
    if aspect not in ("keep", "stretch"):
        raise BadInput(f"aspect must be 'keep' or 'stretch', not {aspect!r}")
    request = parse_size(size)
    in_h, in_w = input_hw
    if request.exact_hw is not None:
        target_h, target_w = request.exact_hw
    else:
        short = request.short_side
        assert short is not None
        scale = short / min(in_h, in_w)
        target_h, target_w = in_h * scale, in_w * scale
    if aspect == "stretch":
        # The original: (1080 // 16 * 16, 1920 // 16 * 16) = (1072, 1920) (spec §5.1).
        model_hw = (
            int(target_h) // MODEL_MULTIPLE * MODEL_MULTIPLE,
            int(target_w) // MODEL_MULTIPLE * MODEL_MULTIPLE,
        )
        return OutputGeometry(input_hw, model_hw, model_hw)
    resize_hw = (_round_to(target_h, 2), _round_to(target_w, 2))
    model_hw = (_ceil_to(resize_hw[0], MODEL_MULTIPLE), _ceil_to(resize_hw[1], MODEL_MULTIPLE))
    return OutputGeometry(input_hw, resize_hw, model_hw)
