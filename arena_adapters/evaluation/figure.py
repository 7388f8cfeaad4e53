"""The PNG figure of an evaluation: latency histogram and per-episode outcome.

Needs matplotlib (``pip install arena-adapters[report]``); without it :func:`write_figure` says so
and returns ``None``.
"""

from __future__ import annotations

import os
from pathlib import Path

from arena_adapters.evaluation.report import EvalResult

_SUCCESS, _FAILURE = "#2ca02c", "#d62728"
MISSING_MATPLOTLIB = "matplotlib is not installed: no figure (pip install 'arena-adapters[report]')"


def matplotlib_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_figure(result: EvalResult, path: str | os.PathLike[str]) -> Path | None:
    """Draw the figure of ``result`` into ``path`` (PNG); ``None`` when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        return None
    figure = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    latency_axes, episode_axes = figure.subplots(1, 2)

    latency = result.latency
    samples_ms = [value * 1e3 for value in result.latencies_s]
    if samples_ms:
        latency_axes.hist(samples_ms, bins=min(60, max(10, len(samples_ms) // 5)), color="#4c72b0")
        for value, label, style in (
            (latency.p50_ms, "p50", "-"),
            (latency.p95_ms, "p95", "--"),
            (latency.p99_ms, "p99", ":"),
        ):
            latency_axes.axvline(value, color="black", linestyle=style, linewidth=1, label=f"{label} {value:.2f} ms")
        latency_axes.legend(loc="upper right", fontsize=8)
    else:
        latency_axes.text(0.5, 0.5, "no requests", ha="center", va="center", transform=latency_axes.transAxes)
    latency_axes.set_title(f"request latency ({latency.count} requests)")
    latency_axes.set_xlabel("ms")
    latency_axes.set_ylabel("requests")

    episodes = sorted(result.episodes, key=lambda e: e.index)
    if episodes:
        colors = [_SUCCESS if e.success else _FAILURE for e in episodes]
        episode_axes.bar([e.index for e in episodes], [e.length for e in episodes], color=colors, width=0.9)
        handles = [Patch(color=_SUCCESS, label="success"), Patch(color=_FAILURE, label="failure")]
        episode_axes.legend(handles=handles, loc="upper right", fontsize=8)
    else:
        episode_axes.text(0.5, 0.5, "no finished episode", ha="center", va="center", transform=episode_axes.transAxes)
    episode_axes.set_title(
        f"episodes: {result.successes}/{result.completed} succeeded ({result.success_rate * 100:.1f} %)"
        + (" - interrupted" if result.interrupted else "")
    )
    episode_axes.set_xlabel("episode (start order)")
    episode_axes.set_ylabel("length (steps)")

    title = " / ".join(str(result.info[key]) for key in ("environment", "adapter") if key in result.info)
    if title:
        figure.suptitle(title)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target
