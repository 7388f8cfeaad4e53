"""Timing helpers for the benchmark sections: medians, which resist a busy machine's outliers, and
how a time is written in their tables and notes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def seconds(value: float) -> str:
    """``value`` seconds in us, ms or s."""
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1.0:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def median_seconds(function: Callable[[], Any], repeat: int, runs: int = 7) -> float:
    """Median over ``runs`` of the mean time per call of ``repeat`` calls, after one warm-up call."""
    function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def interleaved_medians(
    functions: dict[str, Callable[[], Any]], repeat: int, runs: int = 7
) -> dict[str, float]:
    """Like :func:`median_seconds` for several functions, their runs interleaved, so a load spike
    on a shared machine hits them alike."""
    for function in functions.values():
        function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            started = time.perf_counter()
            for _ in range(repeat):
                function()
            samples[name].append((time.perf_counter() - started) / repeat)
    return {name: statistics.median(values) for name, values in samples.items()}
