"""Official weight files -> modules: key tables, strict loading, clear errors."""

from vidrefine.checkpoints.common import (
    RawCheckpoint,
    load_strict,
    read_checkpoint,
    save_safetensors,
)
from vidrefine.checkpoints.dit import DiTWeights, convert_dit, load_dit, read_dit_weights
from vidrefine.checkpoints.vae import convert_vae, load_vae, read_vae_weights

__all__ = ["RawCheckpoint", "load_strict", "read_checkpoint", "save_safetensors"]
__all__ += ["DiTWeights", "convert_dit", "load_dit", "read_dit_weights"]
__all__ += ["convert_vae", "load_vae", "read_vae_weights"]
