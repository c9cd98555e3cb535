"""Rich tables for benchmarks/refine_gpu.py: per phase, then fast vs faithful ratios."""

from __future__ import annotations

import platform

import torch

PHASE_ORDER = ("shot detection", "T5", "I/O read", "VAE encode", "DiT", "VAE decode", "I/O write")


def _ordered(names):
    def key(name: str) -> tuple[int, int]:
        for rank, prefix in enumerate(PHASE_ORDER):
            if name.startswith(prefix):
                tail = name.removeprefix("DiT pass ").strip()
                return rank, int(tail) if tail.isdigit() else 0
        return len(PHASE_ORDER), 0

    return sorted(names, key=key)


def phase_rows(result, rate: float) -> list[tuple[str, ...]]:
    """(phase, seconds, TFLOP, TFLOP/s, % of matmul, peak GB) rows, DiT total and end to end."""
    rows = []
    for name in _ordered(result.seconds):
        rows.append(_row(name, result.seconds[name], result.flops.get(name), result, rate))
    dit = [n for n in result.seconds if n.startswith("DiT pass")]
    dit_s = sum(result.seconds[n] for n in dit)
    dit_flops = sum(result.flops.get(n, 0) for n in dit)
    rows.append(_row(f"DiT total ({len(dit)} passes)", dit_s, dit_flops, result, rate, peak=False))
    accounted = sum(result.seconds.values()) - result.seconds.get("T5", 0.0)
    other = max(0.0, result.total_s - result.seconds.get("T5", 0.0) - accounted)
    rows.append(("other (resize, noise, flush)", f"{other:.3f}", "", "", "", ""))
    total_flops = sum(result.flops.values())
    rows.append(_row("end to end", result.total_s, total_flops, result, rate, peak=False))
    return rows


def _row(name, seconds, flops, result, rate, *, peak=True) -> tuple[str, ...]:
    achieved = flops / seconds if flops and seconds else None
    return (
        name,
        f"{seconds:.3f}",
        f"{flops / 1e12:.4g}" if flops else "",
        f"{achieved / 1e12:.3g}" if achieved else "",
        f"{100 * achieved / rate:.0f}%" if achieved else "",
        f"{result.peaks.get(name, 0) / 1e9:.3g}" if peak and name in result.peaks else "",
    )


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU's description and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def print_tables(results, device: torch.device, rate: float, rate_what: str, notes) -> None:
    """Print one table per run, then a ratio table (faithful seconds / fast seconds)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140, highlight=False)
    console.print(f"device: {device_name(device)}; {rate_what}: {rate / 1e12:.3g} TFLOP/s")
    peak_what = "peak GB (allocated)" if device.type == "cuda" else "peak GB (working set)"
    for r in results:
        table = Table(title=f"{r.path} path, {r.steps} steps, guidance on")
        for column in ("phase", "seconds", "TFLOP", "TFLOP/s", "% matmul", peak_what):
            table.add_column(column, justify="left" if column == "phase" else "right")
        for row in phase_rows(r, rate):
            table.add_row(*row)
        console.print(table)
    by_key = {(r.path, r.steps): r for r in results}
    ratio = Table(title="speed-up of the fast path (faithful seconds / fast seconds)")
    for column in ("steps", "end to end", "DiT total", "VAE encode", "VAE decode"):
        ratio.add_column(column, justify="right")
    for (path, steps), fast in sorted(by_key.items()):
        slow = by_key.get(("faithful", steps))
        if path != "fast" or slow is None:
            continue
        cells = [_ratio(slow.total_s, fast.total_s)]
        cells.append(_ratio(_dit(slow), _dit(fast)))
        for phase in ("VAE encode", "VAE decode"):
            cells.append(_ratio(slow.seconds.get(phase, 0), fast.seconds.get(phase, 0)))
        ratio.add_row(str(steps), *cells)
    if ratio.row_count:
        console.print(ratio)
    for note in dict.fromkeys(notes):
        console.print(f"note: {note}")


def _dit(result) -> float:
    return sum(v for k, v in result.seconds.items() if k.startswith("DiT pass"))


def _ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.2f}x" if fast > 0 else "-"
