"""A policy's counters (``policy.stats``) as plain JSON values for a report."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

RAW_SAMPLE_KEYS = frozenset({"latencies_s"})
"""Keys of raw samples that reports keep elsewhere (``latencies_ms``); only their count is copied."""


def plain_stats(stats: Any) -> Any:
    """``stats`` (a dataclass, a mapping, an object with attributes, or a plain value) as JSON values.

    Raw sample lists named in :data:`RAW_SAMPLE_KEYS` become ``{"count": n}``; whatever else the
    policy counts (per-replica counters, retries...) is copied as it is, so new counters reach the
    report without changes here.
    """
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return _plain_items({field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)})
    if isinstance(stats, Mapping):
        return _plain_items(stats)
    if isinstance(stats, (str, bool, int, float)) or stats is None:
        return stats
    if isinstance(stats, (list, tuple)):
        return [plain_stats(item) for item in stats]
    if hasattr(stats, "item") and callable(stats.item):  # numpy / torch scalars
        return plain_stats(stats.item())
    if hasattr(stats, "__dict__"):
        return _plain_items({key: value for key, value in vars(stats).items() if not key.startswith("_")})
    return str(stats)


def _plain_items(items: Mapping[Any, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, value in items.items():
        name = str(key)
        if name in RAW_SAMPLE_KEYS and hasattr(value, "__len__"):
            plain[name] = {"count": len(value)}
        else:
            plain[name] = plain_stats(value)
    return plain
