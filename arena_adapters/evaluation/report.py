"""The outcome of an evaluation: numbers, a one-screen summary, a JSON report."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena_adapters.evaluation.episodes import Episode
from arena_adapters.evaluation.request_counts import RequestComparison
from arena_adapters.evaluation.statistics import LatencySummary, LengthSummary
from arena_adapters.options import masked

REPORT_VERSION = 1


@dataclass
class EvalResult:
    """What :func:`~arena_adapters.evaluation.evaluate` measured.

    Attributes:
        num_envs, num_episodes: the requested sizes.
        episodes: the counted episodes that finished, in the order they finished.
        latencies_s: the wall time of every inference request (translate, send, receive, translate).
        queries: inference requests (round trips; one per step that needed any action chunk).
        env_requests: env observations sent (sum of queried envs over all requests).
        steps: env steps taken.
        wall_time_s: time from the first reset to the end.
        interrupted: stopped by Ctrl-C before all episodes finished.
        error: ``"Type: message"`` of the exception that stopped the run, if one did.
        info: free-form context (adapter, endpoint, environment, options) copied into the report.
        report_path, figure_path: where the report and figure were written, if they were.
        request_comparison: requests sent next to the ideal and an Arena-style client, when
            computed (the demo does).
    """

    num_envs: int
    num_episodes: int
    episodes: list[Episode] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    queries: int = 0
    env_requests: int = 0
    steps: int = 0
    wall_time_s: float = 0.0
    interrupted: bool = False
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
    figure_path: Path | None = None
    request_comparison: RequestComparison | None = None

    @property
    def completed(self) -> int:
        """Counted episodes that finished."""
        return len(self.episodes)

    @property
    def successes(self) -> int:
        """Finished episodes that succeeded."""
        return sum(episode.success for episode in self.episodes)

    @property
    def success_rate(self) -> float:
        """Successes over finished episodes (0 when none finished)."""
        return self.successes / self.completed if self.completed else 0.0

    @property
    def latency(self) -> LatencySummary:
        """Per-request latency percentiles."""
        return LatencySummary.of(self.latencies_s)

    @property
    def episode_length(self) -> LengthSummary:
        """Episode length statistics."""
        return LengthSummary.of([episode.length for episode in self.episodes])

    def _rate(self, count: int) -> float:
        return count / self.wall_time_s if self.wall_time_s > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        """Inference requests per second of wall time."""
        return self._rate(self.queries)

    @property
    def steps_per_s(self) -> float:
        """Vectorized env steps per second (each steps ``num_envs`` envs)."""
        return self._rate(self.steps)

    @property
    def complete(self) -> bool:
        """True when every requested episode finished."""
        return self.completed >= self.num_episodes

    def to_dict(self) -> dict[str, Any]:
        """The JSON report as plain Python values."""
        return {
            "report_version": REPORT_VERSION,
            **masked(self.info),
            "num_envs": self.num_envs,
            "num_episodes": self.num_episodes,
            "completed_episodes": self.completed,
            "complete": self.complete,
            "interrupted": self.interrupted,
            "error": self.error,
            "success_rate": round(self.success_rate, 6),
            "successes": self.successes,
            "episode_length": self.episode_length.to_dict(),
            "latency_ms": self.latency.to_dict(),
            "requests": {
                "count": self.queries,
                "per_s": round(self.requests_per_s, 3),
                "env_observations": self.env_requests,
                "env_observations_per_s": round(self._rate(self.env_requests), 3),
                **({"compared": self.request_comparison.to_dict()} if self.request_comparison else {}),
            },
            "steps": {
                "count": self.steps,
                "per_s": round(self.steps_per_s, 3),
                "env_steps_per_s": round(self._rate(self.steps * self.num_envs), 3),
            },
            "wall_time_s": round(self.wall_time_s, 4),
            "episodes": [
                {
                    "index": e.index,
                    "env_id": e.env_id,
                    "length": e.length,
                    "success": e.success,
                    "end_step": e.end_step,
                }
                for e in sorted(self.episodes, key=lambda e: e.index)
            ],
            "latencies_ms": [round(value * 1e3, 4) for value in self.latencies_s],
        }

    def summary(self) -> str:
        """A few human-readable lines: success rate, lengths, latency, throughput."""
        latency = self.latency
        lengths = self.episode_length
        status = "interrupted, partial results" if self.interrupted else ("failed: " + self.error if self.error else "")
        title = " ".join(str(self.info[key]) for key in ("environment", "adapter") if key in self.info)
        lines = [
            f"{title or 'evaluation'}: {self.completed}/{self.num_episodes} episodes on {self.num_envs} envs"
            + (f" ({status})" if status else ""),
            f"  success rate   {self.success_rate * 100:6.1f} %  ({self.successes}/{self.completed})",
            f"  episode length mean {lengths.mean:.1f}  min {lengths.min}  max {lengths.max} steps",
            f"  latency        p50 {latency.p50_ms:.2f} ms  p95 {latency.p95_ms:.2f} ms  "
            f"p99 {latency.p99_ms:.2f} ms  ({latency.count} requests)",
            f"  throughput     {self.requests_per_s:.1f} requests/s  {self.steps_per_s:.1f} steps/s  "
            f"({self.steps_per_s * self.num_envs:.0f} env steps/s)  in {self.wall_time_s:.1f} s",
        ]
        if self.request_comparison is not None:
            lines.append(self.request_comparison.summary())
        if self.report_path is not None:
            lines.append(f"  report         {self.report_path}")
        if self.figure_path is not None:
            lines.append(f"  figure         {self.figure_path}")
        return "\n".join(lines)


def write_json(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result.to_dict()`` to ``path`` atomically (a partial file is never left); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    os.replace(temporary, target)
    return target


def read_json(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Read a report written by :func:`write_json`."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an evaluation report")
    return data
