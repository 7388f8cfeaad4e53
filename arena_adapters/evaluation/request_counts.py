"""How many inference requests an evaluation sent, against the ideal and an Arena-style client.

Both references are counted by replaying the run's own episode pattern (when each env's episodes
started and ended, from the counted episodes of a complete run) through a shadow schedule, with
every env executing ``chunk_steps`` actions of each chunk:

- **ideal**: each env asks for a chunk when its episode starts and whenever it has executed
  ``chunk_steps`` actions, and only then (what :class:`~arena_adapters.scheduler.ActionChunkScheduler`
  does with the ``replay`` strategy). Env observations: ``sum(ceil(length / chunk_steps))`` over the
  episodes; round trips: the steps at which at least one env asks (one batched request per step).
- **Arena-style**: Isaac Lab Arena's GR00T closed-loop client, which sends one batched request for
  *all* envs whenever *any* env needs a chunk (after a reset or once its chunk is used up), and
  gives every env a fresh chunk. Envs are counted while they run counted episodes (Arena would also
  query the envs our runner has paused, so its real count is at least this).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from arena_adapters.evaluation.episodes import Episode


@dataclass(frozen=True)
class RequestCount:
    """Round trips and the env observations they carried."""

    queries: int
    env_observations: int

    def to_dict(self) -> dict[str, int]:
        """``{"queries": ..., "env_observations": ...}``."""
        return {"queries": self.queries, "env_observations": self.env_observations}


@dataclass(frozen=True)
class RequestComparison:
    """Requests an evaluation sent, next to the ideal and an Arena-style client (module docstring).

    Attributes:
        sent: what the evaluation sent.
        ideal: the fewest that give every env a chunk when it needs one.
        arena_style: what Arena's GR00T client would send for the same episodes.
        chunk_steps: actions executed per chunk in the shadow schedules.
    """

    sent: RequestCount
    ideal: RequestCount
    arena_style: RequestCount
    chunk_steps: int
    method: str = "shadow schedules replayed from the run's episodes"

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the JSON report."""
        return {
            "sent": self.sent.to_dict(),
            "ideal": self.ideal.to_dict(),
            "arena_style": self.arena_style.to_dict(),
            "chunk_steps": self.chunk_steps,
            "method": self.method,
        }

    def summary(self) -> str:
        """One line for the evaluation summary."""
        def ratio(count: int, reference: int) -> str:
            return f"{count / reference:.2f}x" if reference else "-"

        sent, ideal, arena = self.sent.env_observations, self.ideal.env_observations, self.arena_style.env_observations
        return (f"  requests       sent {self.sent.queries} ({sent} env obs), ideal {self.ideal.queries} ({ideal}), "
                f"Arena-style {self.arena_style.queries} ({arena}); env obs sent/ideal {ratio(sent, ideal)}, "
                f"Arena-style/sent {ratio(arena, sent)}  [{self.chunk_steps} actions per chunk]")


def episode_pattern(episodes: Iterable[Episode], num_envs: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(starts, running)``, both ``(steps, num_envs)`` bool: which envs start a counted episode at
    each step, and which are running one."""
    episodes = list(episodes)
    steps = max((episode.end_step for episode in episodes), default=0)
    starts = np.zeros((steps, num_envs), dtype=bool)
    running = np.zeros((steps, num_envs), dtype=bool)
    for episode in episodes:
        first = episode.end_step - episode.length
        starts[first, episode.env_id] = True
        running[first:episode.end_step, episode.env_id] = True
    return starts, running


def ideal_requests(episodes: Iterable[Episode], num_envs: int, chunk_steps: int) -> RequestCount:
    """The ideal count (module docstring)."""
    starts, running = episode_pattern(episodes, num_envs)
    since_start = np.zeros(num_envs, dtype=np.int64)
    due_steps = observations = 0
    for step in range(len(starts)):
        since_start = np.where(starts[step], 0, since_start)
        due = running[step] & (since_start % chunk_steps == 0)
        observations += int(due.sum())
        due_steps += bool(due.any())
        since_start += 1
    return RequestCount(due_steps, observations)


def arena_style_requests(episodes: Iterable[Episode], num_envs: int, chunk_steps: int) -> RequestCount:
    """The Arena-style count (module docstring)."""
    starts, running = episode_pattern(episodes, num_envs)
    remaining = np.zeros(num_envs, dtype=np.int64)
    queries = observations = 0
    for step in range(len(starts)):
        remaining[starts[step]] = 0
        if (running[step] & (remaining == 0)).any():
            queries += 1
            observations += int(running[step].sum())
            remaining[:] = chunk_steps
        remaining -= 1
    return RequestCount(queries, observations)


def compare_requests(
    episodes: Iterable[Episode], num_envs: int, chunk_steps: int, sent: RequestCount
) -> RequestComparison:
    """``sent`` next to the ideal and Arena-style counts for the same episodes."""
    episodes = list(episodes)
    return RequestComparison(
        sent=sent,
        ideal=ideal_requests(episodes, num_envs, chunk_steps),
        arena_style=arena_style_requests(episodes, num_envs, chunk_steps),
        chunk_steps=chunk_steps,
    )


def episodes_from_report(report: Mapping[str, Any]) -> list[Episode]:
    """The episodes of a JSON report written by :func:`~arena_adapters.evaluation.write_json`."""
    return [Episode(e["index"], e["env_id"], e["length"], e["success"], e["end_step"]) for e in report["episodes"]]
