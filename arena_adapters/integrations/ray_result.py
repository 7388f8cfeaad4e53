"""The merged outcome of a sharded evaluation: one report of exactly ``M`` episodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arena_adapters.evaluation.episodes import Episode
from arena_adapters.evaluation.report import EvalResult


@dataclass
class ShardedResult(EvalResult):
    """An :class:`~arena_adapters.evaluation.EvalResult` merged from the shards of a Ray run.

    ``num_envs`` is the envs of one shard; ``steps`` the vectorized env steps of all shards together
    (failed attempts included: that work was done); ``episodes`` carry global ids in ``index`` and
    their shard-local ``env_id``/``end_step``.

    Attributes:
        num_shards: shards the episodes were split over.
        env_steps: single-env steps of all shards (each shard steps ``num_envs`` envs at a time).
        shards: per shard: endpoint, episode block, attempts, throughput, its policy's stats.
        reruns: ids of episodes that a failed shard attempt had started and a later attempt finished.
        duplicates: results dropped because their id had already finished (a late report of a dead
            attempt); never counted twice.
        episode_origin: ``{episode id: (shard, attempt)}``.
        span_s: from the first shard starting its episodes to the last result (the run's wall time
            less start-up: connecting, starting actors and servers).
    """

    num_shards: int = 1
    env_steps: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)
    reruns: list[int] = field(default_factory=list)
    duplicates: int = 0
    episode_origin: dict[int, tuple[int, int]] = field(default_factory=dict)
    span_s: float = 0.0

    @staticmethod
    def from_snapshot(snapshot: Mapping[str, Any], *, num_envs: int, num_episodes: int, num_shards: int,
                      wall_time_s: float, info: Mapping[str, Any]) -> ShardedResult:
        """Build from :meth:`~arena_adapters.integrations.ray_shards.EpisodeCollector.snapshot`."""
        rows = list(snapshot["episodes"])
        shards = list(snapshot["shards"])
        return ShardedResult(
            num_envs=num_envs,
            num_episodes=num_episodes,
            episodes=[Episode(row["index"], row["env_id"], row["length"], row["success"], row["end_step"])
                      for row in rows],
            latencies_s=list(snapshot["latencies_s"]),
            queries=sum(shard["queries"] for shard in shards),
            env_requests=sum(shard["env_requests"] for shard in shards),
            steps=sum(shard["steps"] for shard in shards),
            wall_time_s=wall_time_s,
            info=dict(info),
            num_shards=num_shards,
            env_steps=sum(shard["env_steps"] for shard in shards),
            shards=shards,
            reruns=list(snapshot["reruns"]),
            duplicates=int(snapshot["duplicates"]),
            episode_origin={row["index"]: (row["shard"], row["attempt"]) for row in rows},
            span_s=float(snapshot.get("span_s", 0.0)),
        )

    @property
    def episodes_per_s(self) -> float:
        """Finished episodes per second of the run's wall time."""
        return self._rate(self.completed)

    @property
    def env_steps_per_s(self) -> float:
        """Single-env steps of all shards per second of wall time."""
        return self._rate(self.env_steps)

    def to_dict(self) -> dict[str, Any]:
        """The report of :class:`EvalResult` with shard and attempt on every episode and a
        ``sharding`` section (per-shard throughput, reruns); ``steps`` counts all shards."""
        report = super().to_dict()
        report["steps"] = {
            "count": self.steps,
            "per_s": round(self.steps_per_s, 3),
            "env_steps": self.env_steps,
            "env_steps_per_s": round(self.env_steps_per_s, 3),
        }
        for episode in report["episodes"]:
            shard, attempt = self.episode_origin.get(episode["index"], (None, None))
            episode["shard"], episode["attempt"] = shard, attempt
        report["sharding"] = {
            "num_shards": self.num_shards,
            "episodes_per_s": round(self.episodes_per_s, 4),
            "env_steps_per_s": round(self.env_steps_per_s, 3),
            "span_s": round(self.span_s, 4),
            "span_episodes_per_s": round(self.completed / self.span_s, 4) if self.span_s > 0 else 0.0,
            "span_env_steps_per_s": round(self.env_steps / self.span_s, 3) if self.span_s > 0 else 0.0,
            "reruns": self.reruns,
            "duplicates_dropped": self.duplicates,
            "replicas": self.replica_totals(),
            "shards": self.shards,
        }
        return report

    def replica_totals(self) -> dict[str, dict[str, Any]]:
        """Per-replica counters (requests, env observations, failures, busy seconds) summed over
        every shard attempt that reported them (``policy.stats.replicas``), by endpoint."""
        totals: dict[str, dict[str, Any]] = {}
        for shard in self.shards:
            for report in shard.get("reports", {}).values():
                for replica in report.get("policy_stats", {}).get("replicas", []) or []:
                    if not isinstance(replica, Mapping) or "endpoint" not in replica:
                        continue
                    total = totals.setdefault(str(replica["endpoint"]), {})
                    for key, value in replica.items():
                        if isinstance(value, (int, float)) and not isinstance(value, bool):
                            total[key] = total.get(key, 0) + value
        return totals

    def summary(self) -> str:
        """The summary of :class:`EvalResult` (throughput over all shards) and a line per shard."""
        lines = super().summary().splitlines()
        for number, line in enumerate(lines):
            if line.lstrip().startswith("throughput"):
                lines[number] = (
                    f"  throughput     {self.requests_per_s:.1f} requests/s  {self.episodes_per_s:.2f} episodes/s  "
                    f"{self.env_steps_per_s:.0f} env steps/s  in {self.wall_time_s:.1f} s "
                    f"over {self.num_shards} shards"
                )
        outputs = [line for line in lines if line.lstrip().startswith(("report ", "figure "))]
        lines = [line for line in lines if line not in outputs]
        lines[0] = lines[0].replace(f"on {self.num_envs} envs", f"on {self.num_shards} shards x {self.num_envs} envs")
        if self.span_s > 0:
            lines.append(
                f"  after start-up {self.completed / self.span_s:.2f} episodes/s  "
                f"{self.env_steps / self.span_s:.0f} env steps/s  in {self.span_s:.1f} s "
                f"(first shard starting its episodes to the last result)"
            )
        for shard in self.shards:
            retried = f", {shard['attempts'] - 1} restarts" if shard["attempts"] > 1 else ""
            lines.append(
                f"  shard {shard['shard']:<3}      {shard['finished']}/{shard['episodes']} episodes  "
                f"{shard['episodes_per_s']:.2f} episodes/s  {shard['env_steps_per_s']:.0f} env steps/s  "
                f"{shard['endpoint'] or ''}{retried}"
            )
        if self.reruns:
            lines.append(f"  re-run         episodes {self.reruns} (their shard's attempt failed)")
        return "\n".join(lines + outputs)
