import pytest

from vidrefine.errors import BadInput
from vidrefine.geometry import parse_size, plan_geometry


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
