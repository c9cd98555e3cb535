"""What a plan knows of the machine: the device's kind, name and memory, and the host's memory.

Measured once by the caller (`vidrefine.runtime.device.device_memory`) and handed to the
planner, so planning itself needs no torch and `vidrefine info --plan` and a run see one budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidrefine.config import resolve_precision

HOST_VAE_SHARE = 0.5  # without a GPU the VAE may plan for half of the host's memory


@dataclass(frozen=True)
class DeviceFacts:
    """The run's device ("cuda" or "cpu"), its total memory (None on the CPU) and the host's."""

    kind: str
    name: str
    memory_gb: float | None
    host_memory_gb: float

    def budget_gb(self, vram_gb: float | None) -> float | None:
        """The GPU memory to plan for: `--vram` when given, else the device's; None on the CPU."""
        return vram_gb if vram_gb is not None else self.memory_gb

    def precision(self, name: str) -> str:
        """A config precision resolved for this device: "auto" is bf16 on CUDA, fp32 elsewhere."""
        return resolve_precision(name, self.kind)


CPU = DeviceFacts("cpu", "cpu", None, 16.0)  # for tests and examples: a 16 GB host, no GPU
