"""Timing helper shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def per_call_seconds(function: Callable[[], Any], repeat: int, runs: int = 7) -> float:
    """Best (minimum) over ``runs`` of the mean time per call, after one warm-up call."""
    function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        samples.append((time.perf_counter() - started) / repeat)
    return min(samples)


def per_call_ms(function: Callable[[], Any], repeat: int, runs: int = 7) -> float:
    """:func:`per_call_seconds` in milliseconds."""
    return per_call_seconds(function, repeat, runs) * 1e3


def per_call_us(function: Callable[[], Any], repeat: int, runs: int = 7) -> float:
    """:func:`per_call_seconds` in microseconds."""
    return per_call_seconds(function, repeat, runs) * 1e6
