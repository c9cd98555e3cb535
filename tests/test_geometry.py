import pytest

from vidrefine.errors import BadInput
from vidrefine.plan.geometry import parse_size, plan_geometry


@pytest.mark.parametrize(
    "input_hw,size,resize_hw,model_hw",
    [
        ((270, 480), "1080p", (1080, 1920), (1088, 1920)),
        ((1920, 1080), "1080p", (1920, 1080), (1920, 1088)),  # portrait phone clip
        ((528, 720), "720p", (720, 982), (720, 992)),
        ((240, 320), "1280x720", (720, 1280), (720, 1280)),
    ],
)
def test_geometry_keeps_aspect_and_pads_to_16_when_default(input_hw, size, resize_hw, model_hw):
    g = plan_geometry(input_hw, size)
    assert g.resize_hw == resize_hw and g.model_hw == model_hw
    assert all(m % 16 == 0 and m >= r for m, r in zip(g.model_hw, g.resize_hw, strict=True))
    assert all(v % 2 == 0 for v in g.output_hw)
    if "x" not in size:
        in_aspect = input_hw[1] / input_hw[0]
        out_aspect = g.output_hw[1] / g.output_hw[0]
        assert abs(out_aspect - in_aspect) / in_aspect < 0.01


def test_geometry_stretches_like_the_original_when_faithful():
    g = plan_geometry((256, 480), "1920x1080", aspect="stretch")
    assert g.model_hw == (1072, 1920) == g.output_hw


@pytest.mark.parametrize("text", ["big", "1080", "0x0", "99999x100", "x720", "", "10p", "9999p"])
def test_size_is_refused_when_nonsense(text):
    with pytest.raises(BadInput):
        parse_size(text)


def test_model_input_is_the_same_when_frames_are_resized_a_few_at_a_time(monkeypatch) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from einops import rearrange

    import vidrefine.pipeline.steps as refine
    from vidrefine.plan.geometry import plan_geometry

    geometry = plan_geometry((90, 160), "64p", aspect="keep")
    frames = np.random.default_rng(0).integers(0, 256, (13, 90, 160, 3), dtype=np.uint8)
    monkeypatch.setattr(refine, "RESIZE_FRAMES", 4)  # 4 + 4 + 4 + 1
    got = refine.frames_to_model_input(frames, geometry, torch.device("cpu"))
    # the whole window at once, written out: [-1, 1], antialiased bilinear, replicate pad
    video = rearrange(torch.from_numpy(frames), "t h w c -> t c h w").float() / 127.5 - 1.0
    video = F.interpolate(
        video, size=geometry.resize_hw, mode="bilinear", align_corners=False, antialias=True
    )
    pad_h = geometry.model_hw[0] - geometry.resize_hw[0]
    pad_w = geometry.model_hw[1] - geometry.resize_hw[1]
    video = F.pad(video, (0, pad_w, 0, pad_h), mode="replicate")
    assert torch.equal(got, rearrange(video, "t c h w -> 1 c t h w"))
