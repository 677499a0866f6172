"""Shared timing helpers of the benchmarks: round-robin medians and machine load."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat (zeros where unavailable)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0, 0
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def round_robin(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict:
    """Time every case once per round, in turn, so drifting load hits all alike.

    Returns ``{name: {"median_ms", "min_ms", "runs"}}``.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            tic = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - tic) * 1e3)
    return {
        name: {"median_ms": float(np.median(t)), "min_ms": float(np.min(t)), "runs": len(t)}
        for name, t in times.items()
    }


def machine() -> str:
    """One line describing where the numbers were taken."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )


def load_note(before: tuple[int, int], after: tuple[int, int], own_seconds: float) -> str:
    """How busy the CPUs were during the run (ours included), as a sentence."""
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return "CPU load was not measured."
    share = busy / total
    return (
        f"CPUs were {100 * share:.0f}% busy on average over the {own_seconds:.0f} s run "
        "(this benchmark included); compare ratios within one run only."
    )
