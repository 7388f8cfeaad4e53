"""Bookkeeping of a sharded evaluation, free of Ray: which shard runs which episodes, and the
driver-side ledger that shards stream their finished episodes to.

Episode ids are global and fixed before the run: shard ``i`` of ``K`` owns a contiguous block of the
``M`` ids (:func:`assign_shards`). A shard runs the ids of its block that are not finished yet, and
streams each finished one to the :class:`EpisodeCollector`, which keeps the first result per id. A
shard attempt that dies therefore loses nothing that it reported, and its retry runs exactly the ids
still missing, so the merged report has each of the ``M`` ids once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arena_adapters.errors import ConfigError

EpisodeRow = tuple[int, int, int, bool, int]
"""A finished episode as a shard streams it: ``(episode_id, env_id, length, success, end_step)``."""


@dataclass(frozen=True)
class ShardAssignment:
    """What one shard runs.

    Attributes:
        index: the shard number, ``0 <= index < num_shards``.
        episode_ids: the global ids of its episodes (a contiguous block).
        endpoint: its policy server (replica ``index mod len(endpoints)``), or ``None`` for the
            adapter's default.
    """

    index: int
    episode_ids: tuple[int, ...]
    endpoint: str | None = None


def assign_shards(num_episodes: int, num_shards: int, endpoints: Sequence[str] = ()) -> list[ShardAssignment]:
    """Split ids ``0..num_episodes-1`` into ``num_shards`` contiguous blocks (sizes differ by at most
    one, larger first); shard ``i`` gets ``endpoints[i % len(endpoints)]``.

    Raises:
        ConfigError: fewer than one episode or shard, or more shards than episodes.
    """
    if num_episodes < 1:
        raise ConfigError(f"num_episodes must be >= 1, got {num_episodes}")
    if num_shards < 1:
        raise ConfigError(f"shards: expected >= 1, got {num_shards}")
    if num_shards > num_episodes:
        raise ConfigError(f"shards: {num_shards} shards for {num_episodes} episodes; use at most one shard per episode")
    base, extra = divmod(num_episodes, num_shards)
    assignments = []
    first = 0
    for index in range(num_shards):
        count = base + (1 if index < extra else 0)
        endpoint = endpoints[index % len(endpoints)] if endpoints else None
        assignments.append(ShardAssignment(index, tuple(range(first, first + count)), endpoint))
        first += count
    return assignments


@dataclass
class _Attempt:
    ids: list[int]
    started: int
    began: float


@dataclass
class _ShardTally:
    attempts: list[_Attempt] = field(default_factory=list)
    finished: int = 0
    successes: int = 0
    steps: int = 0
    env_steps: int = 0
    queries: int = 0
    env_requests: int = 0
    first_began: float | None = None
    last_report: float | None = None
    reports: dict[str, Any] = field(default_factory=dict)


class EpisodeCollector:
    """The driver-side ledger of a sharded run (run as a Ray actor by
    :mod:`arena_adapters.integrations.ray_eval`; plain Python, so it is tested without Ray).

    Shards call :meth:`begin` at the start of every attempt, :meth:`record` as episodes finish, and
    :meth:`finish` with their final counters; the driver reads :meth:`progress` while the run goes
    and :meth:`snapshot` at the end.

    Args:
        assignments: ``{shard index: its global episode ids}``.
        endpoints: ``{shard index: endpoint}`` for the report.
    """

    def __init__(self, assignments: Mapping[int, Sequence[int]], endpoints: Mapping[int, str | None] | None = None):
        self.assignments = {int(shard): [int(i) for i in ids] for shard, ids in assignments.items()}
        self.endpoints = dict(endpoints or {})
        self.owner = {episode: shard for shard, ids in self.assignments.items() for episode in ids}
        self.done: dict[int, dict[str, Any]] = {}
        self.latencies_s: list[float] = []
        self.duplicates = 0
        self.shards = {shard: _ShardTally() for shard in self.assignments}
        self.created = time.time()

    def begin(self, shard: int, num_envs: int) -> tuple[int, list[int]]:
        """A shard attempt starts: returns its attempt number (0 first) and the ids it must run
        (those of its block not finished yet), of which the first ``num_envs`` start at once."""
        tally = self._tally(shard)
        remaining = [episode for episode in self.assignments[shard] if episode not in self.done]
        now = time.time()
        tally.attempts.append(_Attempt(remaining, min(num_envs, len(remaining)), now))
        if tally.first_began is None:
            tally.first_began = now
        return len(tally.attempts) - 1, remaining

    def record(
        self,
        shard: int,
        attempt: int,
        episodes: Sequence[EpisodeRow],
        *,
        started: int,
        latencies_s: Sequence[float] = (),
        queries: int = 0,
        env_requests: int = 0,
        steps: int = 0,
        env_steps: int = 0,
    ) -> None:
        """Store finished episodes (the first result per id wins; a repeat is counted as a
        duplicate) and add the counters' increments since the shard's last call.

        Args:
            started: how many of the attempt's ids have started so far (they start in order).
        """
        tally = self._tally(shard)
        run = tally.attempts[attempt]
        run.started = max(run.started, min(int(started), len(run.ids)))
        for episode_id, env_id, length, success, end_step in episodes:
            episode_id = int(episode_id)
            if self.owner.get(episode_id) != shard:
                raise ConfigError(f"shard {shard} reported episode {episode_id}, which it does not own")
            if episode_id in self.done:
                self.duplicates += 1
                continue
            self.done[episode_id] = {
                "index": episode_id, "env_id": int(env_id), "length": int(length), "success": bool(success),
                "end_step": int(end_step), "shard": shard, "attempt": attempt,
            }
            tally.finished += 1
            tally.successes += bool(success)
        self.latencies_s.extend(float(value) for value in latencies_s)
        tally.queries += int(queries)
        tally.env_requests += int(env_requests)
        tally.steps += int(steps)
        tally.env_steps += int(env_steps)
        tally.last_report = time.time()

    def finish(self, shard: int, attempt: int, report: Mapping[str, Any]) -> None:
        """A shard attempt ended normally; ``report`` (plain values: policy stats, device, node) is
        kept for the report."""
        self._tally(shard).reports[str(attempt)] = dict(report)

    def _tally(self, shard: int) -> _ShardTally:
        if shard not in self.shards:
            raise ConfigError(f"unknown shard {shard}; shards: {sorted(self.shards)}")
        return self.shards[shard]

    def reruns(self) -> list[int]:
        """Ids that an attempt started (as last reported) but did not finish, and a later attempt
        finished: the episodes that were run again."""
        rerun = set()
        for tally in self.shards.values():
            for number, run in enumerate(tally.attempts[:-1]):
                for episode in run.ids[:run.started]:
                    done = self.done.get(episode)
                    if done is not None and done["attempt"] > number:
                        rerun.add(episode)
        return sorted(rerun)

    def progress(self) -> dict[str, Any]:
        """Totals so far: finished, successes, in flight, steps, queries, and finished per shard."""
        in_flight = 0
        for tally in self.shards.values():
            if tally.attempts:
                run = tally.attempts[-1]
                in_flight += sum(1 for episode in run.ids[:run.started] if episode not in self.done)
        tallies = self.shards.values()
        return {
            "finished": len(self.done),
            "successes": sum(t.successes for t in tallies),
            "in_flight": in_flight,
            "steps": sum(t.steps for t in tallies),
            "env_steps": sum(t.env_steps for t in tallies),
            "queries": sum(t.queries for t in tallies),
            "env_requests": sum(t.env_requests for t in tallies),
            "per_shard_finished": [self.shards[shard].finished for shard in sorted(self.shards)],
            "per_shard_attempts": [len(self.shards[shard].attempts) for shard in sorted(self.shards)],
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything for the merged report, as plain values."""
        shards = []
        for shard in sorted(self.shards):
            tally = self.shards[shard]
            wall = (tally.last_report - tally.first_began) if tally.last_report and tally.first_began else 0.0
            retried = sorted({episode for run in tally.attempts[1:] for episode in run.ids})
            shards.append({
                "shard": shard,
                "endpoint": self.endpoints.get(shard),
                "episodes": len(self.assignments[shard]),
                "first_episode": self.assignments[shard][0] if self.assignments[shard] else None,
                "finished": tally.finished,
                "successes": tally.successes,
                "attempts": len(tally.attempts),
                "retried_episodes": len(retried),
                "steps": tally.steps,
                "env_steps": tally.env_steps,
                "queries": tally.queries,
                "env_requests": tally.env_requests,
                "wall_time_s": round(wall, 4),
                "episodes_per_s": round(tally.finished / wall, 4) if wall > 0 else 0.0,
                "env_steps_per_s": round(tally.env_steps / wall, 3) if wall > 0 else 0.0,
                "reports": tally.reports,
            })
        began = [t.first_began for t in self.shards.values() if t.first_began is not None]
        ended = [t.last_report for t in self.shards.values() if t.last_report is not None]
        return {
            "span_s": max(ended) - min(began) if began and ended else 0.0,
            "episodes": [self.done[episode] for episode in sorted(self.done)],
            "latencies_s": list(self.latencies_s),
            "shards": shards,
            "reruns": self.reruns(),
            "duplicates": self.duplicates,
        }
