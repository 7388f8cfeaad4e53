"""Summaries of latency samples and episode lengths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    """Per-request latency, in milliseconds (all 0 when there was no request)."""

    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    @staticmethod
    def of(latencies_s: Sequence[float]) -> LatencySummary:
        """Summarize latencies given in seconds."""
        if not len(latencies_s):
            return LatencySummary()
        ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return LatencySummary(len(ms), float(ms.mean()), float(p50), float(p95), float(p99), float(ms.max()))

    def to_dict(self) -> dict[str, float]:
        """Plain values for JSON, keys without the ``_ms`` suffix."""
        return {
            key.removesuffix("_ms"): round(value, 4) if isinstance(value, float) else value
            for key, value in asdict(self).items()
        }


@dataclass(frozen=True)
class LengthSummary:
    """Episode lengths in steps (all 0 when no episode finished)."""

    mean: float = 0.0
    p50: float = 0.0
    min: int = 0
    max: int = 0

    @staticmethod
    def of(lengths: Sequence[int]) -> LengthSummary:
        """Summarize episode lengths."""
        if not len(lengths):
            return LengthSummary()
        values = np.asarray(lengths, dtype=np.float64)
        return LengthSummary(float(values.mean()), float(np.median(values)), int(values.min()), int(values.max()))

    def to_dict(self) -> dict[str, float]:
        """Plain values for JSON."""
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}
