"""Replicas: one policy served by several servers, env groups spread over them.

The core builds one transport per replica endpoint. Envs are split into contiguous groups, one per
live replica, so each replica gets whole batches and the order of env ids is kept. A replica whose
request failed at the connection level (refused, timed out, dropped) is taken out; after
``retry_after`` seconds it is checked with a health call and comes back when healthy. Its envs go to
the remaining replicas in the meantime.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from arena_adapters.parts import EnvIds, InferenceTransport
from arena_adapters.transport.deadline import Deadline

logger = logging.getLogger(__name__)


@dataclass
class ReplicaStats:
    """Counters of one replica.

    Attributes:
        endpoint: the replica's address.
        requests: inference requests sent to it.
        env_requests: env observations sent to it.
        failures: requests that failed at the connection level.
        busy_s: seconds spent in its requests.
        live: False while it is taken out.
    """

    endpoint: str
    requests: int = 0
    env_requests: int = 0
    failures: int = 0
    busy_s: float = 0.0
    live: bool = True


class ReplicaSet:
    """The transports of a policy's replicas and the routing of envs to them."""

    def __init__(
        self, transports: Sequence[InferenceTransport], endpoints: Sequence[str], *, retry_after: float = 10.0
    ) -> None:
        if len(transports) != len(endpoints) or not transports:
            raise ValueError("one endpoint per transport, at least one")
        self.transports = list(transports)
        self.stats = [ReplicaStats(endpoint) for endpoint in endpoints]
        self.retry_after = retry_after
        self._down_since = [0.0] * len(transports)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.transports)

    def live(self) -> list[int]:
        """The replicas in use now; a taken-out one whose wait is over is checked first."""
        live = []
        for index, stats in enumerate(self.stats):
            if not stats.live and time.monotonic() - self._down_since[index] >= self.retry_after:
                self._recheck(index)
            if stats.live:
                live.append(index)
        return live or list(range(len(self.transports)))  # all out: try them all rather than none

    def route(self, env_ids: EnvIds, num_envs: int) -> list[tuple[int, EnvIds]]:
        """Split ``env_ids`` (ascending) into ``(replica, env_ids)`` groups, ascending too."""
        if len(self.transports) == 1:
            return [(0, env_ids)]
        live = self.live()
        slot = (env_ids * len(live)) // max(num_envs, 1)
        groups = []
        for position in np.unique(slot).tolist():
            groups.append((live[position], env_ids[slot == position]))
        return groups

    def next_live(self, failed: int) -> int | None:
        """Another live replica to take over from ``failed``, or ``None``."""
        others = [index for index in self.live() if index != failed and self.stats[index].live]
        return others[(failed) % len(others)] if others else None

    def record(self, index: int, env_count: int, seconds: float) -> None:
        """Count a request that ``index`` answered."""
        with self._lock:
            stats = self.stats[index]
            stats.requests += 1
            stats.env_requests += env_count
            stats.busy_s += seconds

    def take_out(self, index: int, reason: str) -> None:
        """Stop routing to ``index`` for ``retry_after`` seconds."""
        with self._lock:
            stats = self.stats[index]
            stats.failures += 1
            if len(self.transports) > 1 and stats.live:
                stats.live = False
                self._down_since[index] = time.monotonic()
                logger.warning("replica %s taken out for %g s: %s", stats.endpoint, self.retry_after, reason)

    def _recheck(self, index: int) -> None:
        health = self.transports[index].health(Deadline.after(min(2.0, self.retry_after)))
        with self._lock:
            if health.ok:
                self.stats[index].live = True
                logger.info("replica %s is back", self.stats[index].endpoint)
            else:
                self._down_since[index] = time.monotonic()
