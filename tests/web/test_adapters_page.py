"""Issue 22 item 7, the page: a tuned adapter from `serve --adapters DIR`, chosen in the page's
Adapter list with its strength, refines as `upscale --lora FILE:SCALE` does.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from tests.media import make_clip
from tests.web.conftest import ADAPTER
from tests.web.test_api_and_security import app_error, client, uploaded


def page_settings(api) -> list:
    """The page's own values of the six settings before the adapter (the server's preset)."""
    info = api.view_api(return_format="dict", print_info=False)
    parameters = info["named_endpoints"]["/preview"]["parameters"]
    return [p["parameter_default"] for p in parameters[3:9]]


def refined(api, clip: str, *adapter) -> np.ndarray:
    """The page's refined preview of `clip` at 0 s with the adapter settings `adapter`."""
    settings = page_settings(api)
    _, after = api.predict(clip, "a fox in snow", 0, *settings, *adapter, api_name="/preview")
    with av.open(str(after["video"] if isinstance(after, dict) else after)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def clip(server, tmp_path_factory) -> str:
    return uploaded(server, make_clip(tmp_path_factory.mktemp("c") / "c.mp4", frames=5).path)


def test_page_adapter_changes_the_refine_and_strength_0_is_the_base_when_chosen(server, clip):
    api = client(server)
    base = refined(api, clip, "none")
    assert np.array_equal(refined(api, clip, "the preset's"), base)  # the preset has none
    assert np.array_equal(refined(api, clip, ADAPTER, 0.0), base)  # strength 0: the base
    tuned = refined(api, clip, ADAPTER, 1.0)
    assert tuned.shape == base.shape
    assert np.abs(tuned.astype(int) - base.astype(int)).max() > 8  # the adapter acts


@pytest.mark.parametrize("name", ["../adapters/tuned.safetensors", "/etc/passwd", "other.pt"])
def test_page_refuses_an_adapter_not_in_its_folder_in_one_line_when_named(server, clip, name):
    api = client(server)
    message = app_error(
        lambda: api.predict(clip, "a fox", 0, *page_settings(api), name, 1.0, api_name="/preview")
    )
    assert "not in the adapters folder" in message and "\n" not in message, message


def test_adapter_list_offers_the_folders_files_when_the_page_is_built(server) -> None:
    info = client(server).view_api(return_format="dict", print_info=False)
    parameters = info["named_endpoints"]["/preview"]["parameters"]
    adapter = next(p for p in parameters if p["label"] == "Adapter (LoRA)")
    assert adapter["type"]["enum"] == ["the preset's", "none", ADAPTER], adapter
    assert (
        parameters[-1]["label"] == "Adapter strength" and parameters[-1]["parameter_default"] == 1
    )
