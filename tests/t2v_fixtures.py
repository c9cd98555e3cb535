"""Generator plugins registered the way pip registers them: a dist-info folder with entry points.

`register_plugins(folder, {...})` writes `<dist>.dist-info/{METADATA,entry_points.txt}` into a
folder the caller puts on sys.path; importlib.metadata then finds the entry points exactly as it
finds an installed package's. `TOY_GENERATOR` is a tiny plugin module written beside it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

GROUP = "vidrefine.generators"


def register_plugins(
    folder: Path, entries: dict[str, str], *, dist: str = "vr-test-plugins"
) -> Path:
    """Write a dist-info registering `entries` (name -> "module:object") and return `folder`."""
    info = folder / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{GROUP}]"] + [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


# A complete plugin (API version 2) without weights or a DiT: frames are a function of the seed
# (brightness 40 + 20 seed plus seeded noise) and every call is recorded. 16x24 pixels, 9 frames,
# 4 fps. Beside it: plugins one member short of the protocol, and version-1 and future ones.
TOY_GENERATOR = textwrap.dedent(
    """
    from fractions import Fraction

    import numpy as np
    import torch

    from vidrefine.plugins import API_VERSION, GeneratedClip

    class ToyGenerator:
        api_version = API_VERSION
        name = "toy"
        size_hw = (16, 24)
        num_frames = 9
        fps = Fraction(4)
        required_weights = ()
        dit_config = None  # no DiT: nothing for the memory plan
        calls = []
        configured = []
        placements = []

        def latent_shape(self):
            raise NotImplementedError("the toy generator has no DiT")

        def configure(self, config):
            ToyGenerator.configured.append(config)

        def load(self, weights_dir, *, device, placement):
            ToyGenerator.placements.append(placement)
            self.loaded = True

        def generate(self, prompt_embedding, seed, *, progress):
            ToyGenerator.calls.append((float(prompt_embedding.float().abs().sum()), seed))
            gen = torch.Generator().manual_seed(seed)
            level = 40.0 + 20.0 * seed
            t, (h, w) = self.num_frames, self.size_hw
            base = torch.rand((t, h, w, 3), generator=gen, dtype=torch.float64) * 40.0 + level
            frames = base.clamp(0, 255).numpy().astype(np.float32)
            return GeneratedClip(frames, np.rint(frames).astype(np.uint8), self.fps)

        def release(self):
            self.loaded = False

        def describe(self):
            return {"toy": True, "size_hw": list(self.size_hw)}

    class WrongVersion(ToyGenerator):
        api_version = 999

    class VersionOne:  # a complete plugin of API version 1, as written before version 2
        api_version = 1
        name = "old"
        size_hw = (16, 24)
        num_frames = 9
        fps = Fraction(4)
        required_weights = ()

        def load(self, weights_dir, *, device, dtype):
            pass

        def generate(self, prompt_embedding, seed, *, progress):
            raise AssertionError("a version-1 plugin must be refused before it runs")

        def release(self):
            pass

    class OldLoad(ToyGenerator):  # says version 2 but kept version 1's load signature
        def load(self, weights_dir, *, device, dtype):
            pass

    def lacking(member):  # ToyGenerator's members but `member` (copied, not inherited)
        hidden = {member, "__dict__", "__weakref__", "__qualname__"}
        namespace = {k: v for k, v in vars(ToyGenerator).items() if k not in hidden}
        return type(f"ToyWithout_{member}", (), namespace)

    NoDescribe = lacking("describe")
    NoConfigure = lacking("configure")
    NoDitConfig = lacking("dit_config")

    def make_toy():
        return ToyGenerator()
    """
)

BROKEN_GENERATOR = "raise ImportError('the toy plugin needs a package that is not installed')\n"


# Plugins that discovery or creation must refuse, each for one reason (registered on request).
REFUSED_PLUGINS = {
    "old": "vr_toy_plugin:VersionOne",
    "old-load": "vr_toy_plugin:OldLoad",
    "no-describe": "vr_toy_plugin:NoDescribe",
    "no-configure": "vr_toy_plugin:NoConfigure",
    "no-dit-config": "vr_toy_plugin:NoDitConfig",
}


def write_toy_plugins(folder: Path, *, refused: bool = False) -> Path:
    """Write the toy plugin modules and register toy, broken and future-version ones.

    `refused=True` also registers `REFUSED_PLUGINS` (version 1, and plugins one member short).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vr_toy_plugin.py").write_text(TOY_GENERATOR)
    (folder / "vr_broken_plugin.py").write_text(BROKEN_GENERATOR)
    entries = {
        "toy": "vr_toy_plugin:make_toy",
        "toy-class": "vr_toy_plugin:ToyGenerator",
        "broken": "vr_broken_plugin:Generator",
        "future": "vr_toy_plugin:WrongVersion",
    }
    return register_plugins(folder, entries | (REFUSED_PLUGINS if refused else {}))


# ---- tiny official-format weights for the whole t2v path ---------------------------------------

TINY_STAGE1_HW = (16, 16)  # latent 2x2 -> one DiT token per frame
TINY_STAGE1_FRAMES = 5  # 2 latent frames
TINY_STAGE1_STEPS = 3
# Stage II at its smallest size (64x64) with 2-latent windows: a few seconds per clip on a CPU.
TINY_PRESET = textwrap.dedent(
    """
    size = "64x64"
    steps = 2
    window_latent = 2
    window_overlap_latent = 1
    crf = 30
    encoder_preset = "ultrafast"
    """
)


def tiny_stage1():
    """Entry-point factory: the bundled FlashVideo stage I at a tiny size, any DiT shape."""
    from generators.flashvideo_stage1 import FlashVideoStage1

    return FlashVideoStage1(
        size_hw=TINY_STAGE1_HW,
        num_frames=TINY_STAGE1_FRAMES,
        steps=TINY_STAGE1_STEPS,
        dit_config=None,
    )


def write_tiny_weights(folder: Path) -> Path:
    """3d-vae.pt, stage1.pt (LoRA NOT merged), stage2.pt and a T5 folder, all tiny and seeded."""
    import torch
    from dit_fixtures import lora_wrapped, official_dit_tensors, write_official
    from t5_fixtures import make_tiny_t5

    from vidrefine.models.vae import CausalVideoVAE
    from vidrefine.pipeline.selftest import TINY_VAE

    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_t5(folder / "t5-v1_1-xxl")
    unmerged, _ = lora_wrapped(official_dit_tensors(stage2=False, seed=1), rank=4)
    write_official(folder / "stage1.pt", unmerged)
    write_official(folder / "stage2.pt", official_dit_tensors(stage2=True, seed=2))
    torch.manual_seed(3)
    vae = CausalVideoVAE(TINY_VAE)
    torch.save({"state_dict": vae.state_dict()}, folder / "3d-vae.pt")  # official layout
    (folder / "tiny.toml").write_text(TINY_PRESET)
    return folder
