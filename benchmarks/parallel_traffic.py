"""What the lockstep modes send between ranks each Euler step (`plan.ranks.bytes_sent_per_step`).

    python3 benchmarks/parallel_traffic.py               # stage II at 720p and 1080p, 1..8 ranks

`benchmarks/parallel.py` prints the same table for its job after its timings. The bytes are
those of the real stage-II DiT (30 layers, 1920 wide) at the planned size, whatever weights ran.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from vidrefine.config import STAGE2_DIT, RunConfig
from vidrefine.plan.clip import ClipPlan, SourceFacts, plan_clip
from vidrefine.plan.hardware import DeviceFacts
from vidrefine.plan.memory import DTYPE_BYTES
from vidrefine.plan.ranks import PassShape, RankLayout, bytes_sent_per_step

LAYOUTS = (("windows", 2), ("windows", 4), ("guidance", 2), ("sequence", 2), ("sequence", 4))
LAYOUTS += (("guidance+sequence", 4), ("guidance+sequence", 8))
GPU = DeviceFacts("cuda", "80 GB card", 80.0, 256.0)


def pass_shape(plan: ClipPlan) -> PassShape:
    """The sizes of one window's DiT pass in `plan`."""
    h, w = plan.geometry.latent_hw
    frame = STAGE2_DIT.in_channels * h * w
    return PassShape(
        video_tokens=plan.memory.tokens - STAGE2_DIT.text_length,
        text_tokens=STAGE2_DIT.text_length,
        hidden=STAGE2_DIT.hidden_size,
        layers=STAGE2_DIT.num_layers,
        latent_values=plan.windowing.window_latent * frame,
        overlap_values=plan.windowing.overlap_latent * frame,
        dtype_bytes=DTYPE_BYTES[plan.models.dtype],
    )


def traffic_rows(plan: ClipPlan, label: str) -> list[str]:
    """Markdown rows: layout, MB a rank sends a step, and per step of every window."""
    shape = pass_shape(plan)
    rows = []
    for mode, ranks in LAYOUTS:
        sent = bytes_sent_per_step(RankLayout(mode, ranks), shape)
        rows.append(f"| {label} | {mode} | {ranks} | {sent / 1e6:.2f} |")
    return rows


def traffic_table(plans: dict[str, ClipPlan]) -> str:
    """One table for several (label -> plan) sizes."""
    head = ["| size | mode | ranks | MB sent per rank per step |", "|---|---|---|---|"]
    return "\n".join(
        head + [row for label, plan in plans.items() for row in traffic_rows(plan, label)]
    )


def main() -> None:
    """Stage II at 720p and 1080p on a CUDA card (bf16)."""
    source = SourceFacts((1080, 1920), 49, Fraction(24), Fraction(1, 24))
    plans = {size: plan_clip(source, RunConfig(size=size), GPU) for size in ("720p", "1080p")}
    print(traffic_table(plans))


if __name__ == "__main__":
    main()


def job_traffic(clip: Path, preset: Path, size: str) -> str:
    """The table for one clip as `upscale --preset PRESET --size SIZE` plans it on a GPU."""
    from vidrefine.io.probe import probe
    from vidrefine.presets import load_config

    config = load_config(str(preset), {"size": size})
    plan = plan_clip(SourceFacts.of_media(probe(clip)), config, GPU)
    return traffic_table({size: plan})
