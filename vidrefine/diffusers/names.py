"""Names of vidrefine's DiT modules in diffusers' model (no diffusers import needed)."""

from __future__ import annotations

BLOCKS = "transformer_blocks"  # diffusers' name for VideoDiT's `blocks`


def diffusers_key(name: str) -> str:
    """Diffusers' name of a `VideoDiT` module or parameter: `blocks.*` -> `transformer_blocks.*`."""
    head, dot, rest = name.partition(".")
    return f"{BLOCKS}{dot}{rest}" if head == "blocks" else name


__all__ = ["BLOCKS", "diffusers_key"]
