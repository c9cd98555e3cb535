"""What a plan knows of the machine: the device's kind, name and memory, the host's memory, and
the sizes of the weights the run will load.

Measured once by the caller (`vidrefine.pipeline.devices.device_facts`) and handed to the
planner, so planning itself needs no torch and `vidrefine info --plan` and a run see one budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vidrefine.config import resolve_precision
from vidrefine.plan.model_sizes import OFFICIAL_SIZES, ModelSizes

HOST_VAE_SHARE = 0.5  # without a GPU the VAE may plan for half of the host's memory


@dataclass(frozen=True)
class DeviceFacts:
    """The run's device ("cuda" or "cpu"), its total memory (None on the CPU) and the host's.

    `host_available_gb`: the host memory free when measured (None: not measured, a what-if
    plan). `weights`: the sizes of the weight files the run found (None: not read, the
    official sizes are assumed). A plan that knows both is a run's plan: on the CPU, where the
    whole run lives in host memory, it is refused when it does not fit (`checks_host`).
    """

    kind: str
    name: str
    memory_gb: float | None
    host_memory_gb: float
    # what was free at the moment it was measured: checked, never part of what a plan decides
    host_available_gb: float | None = field(default=None, compare=False)
    weights: ModelSizes | None = None

    def budget_gb(self, vram_gb: float | None) -> float | None:
        """The GPU memory to plan for: `--vram` when given, else the device's; None on the CPU."""
        return vram_gb if vram_gb is not None else self.memory_gb

    def precision(self, name: str) -> str:
        """A config precision resolved for this device: "auto" is bf16 on CUDA, fp32 elsewhere."""
        return resolve_precision(name, self.kind)

    @property
    def sizes(self) -> ModelSizes:
        """The models' sizes to plan with: those found, else the official ones."""
        return self.weights or OFFICIAL_SIZES

    @property
    def free_host_gb(self) -> float:
        """Host memory a run may take: what was free when measured, else all of it."""
        return self.host_memory_gb if self.host_available_gb is None else self.host_available_gb

    @property
    def checks_host(self) -> bool:
        """Whether the plan is refused when it does not fit the host: a CPU run whose weights
        and free memory are known.
        """
        known = self.weights is not None and self.host_available_gb is not None
        return self.kind == "cpu" and known


CPU = DeviceFacts("cpu", "cpu", None, 16.0)  # for tests and examples: a 16 GB host, no GPU
