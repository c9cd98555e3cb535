"""Output picture geometry: target size from `--size`, aspect kept by padding, never stretched.

The DiT needs latent sizes divisible by its 2x2 patch, i.e. pixel sizes divisible by 16. The
original stretches to (1072, 1920) (flashvideo-spec §10.1); by default vidrefine resizes with the
aspect kept, pads to a multiple of 16 and crops the result back.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidrefine.config import ASPECTS, OFFICIAL_VAE, STAGE2_DIT, SizeRequest, parse_size
from vidrefine.errors import BadInput

SPATIAL = OFFICIAL_VAE.spatial_factor  # pixels per latent
MODEL_MULTIPLE = SPATIAL * STAGE2_DIT.patch_size  # 8x VAE downsampling times the 2x2 patch


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
        """Latent grid of the padded model input."""
        return self.model_hw[0] // SPATIAL, self.model_hw[1] // SPATIAL


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def ceil_to(value: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= `value`."""
    return -(-value // multiple) * multiple


def plan_geometry(input_hw: tuple[int, int], size: str, *, aspect: str = "keep") -> OutputGeometry:
    """Choose resize and model sizes for an input of `input_hw` (display orientation).

    `aspect="keep"` scales so the short side matches (even sizes, for yuv420p) and pads to 16.
    `aspect="stretch"` resizes straight to the request rounded down to 16, as the original does.
    """
    if aspect not in ASPECTS:
        raise BadInput(f"aspect must be one of {', '.join(ASPECTS)}, not {aspect!r}")
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
    model_hw = (ceil_to(resize_hw[0], MODEL_MULTIPLE), ceil_to(resize_hw[1], MODEL_MULTIPLE))
    return OutputGeometry(input_hw, resize_hw, model_hw)


__all__ = ["OutputGeometry", "SizeRequest", "ceil_to", "parse_size", "plan_geometry"]
