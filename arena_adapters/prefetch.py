"""Action chunks requested ahead of time (asynchronous prefetch), per env.

With ``prefetch_steps = m``, an env is queried in the background, with the observation of that
step, as soon as it has ``r <= m`` actions left (``r = m`` unless its chunk is shorter); the envs
that reach that point at the same step share one request. The new chunk starts ``r`` steps later,
when the old one runs out; its first ``r`` actions belong to steps that have passed, so they are
skipped. Counting in control steps (not wall time) keeps runs reproducible: the actions taken do
not depend on how fast the server answers. If the chunk has not arrived when it is needed, the
policy waits for it. Requests run one after another on the policy's transport worker, each while
the env keeps stepping.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from arena_adapters.errors import ActionError
from arena_adapters.parts import EnvIds


@dataclass
class _Batch:
    future: Future[torch.Tensor]
    env_ids: EnvIds
    skips: EnvIds


class PendingChunks:
    """The chunks in flight: which env waits for which background request, and how many of its
    actions will have elapsed when it is loaded."""

    def __init__(self, num_envs: int) -> None:
        self._batch_of = np.full(num_envs, -1, dtype=np.int64)
        self._batches: dict[int, _Batch] = {}
        self._next_batch = 0

    def add(self, future: Future[torch.Tensor], env_ids: EnvIds, skips: EnvIds) -> None:
        """Record a background request for ``env_ids`` (ascending) whose rows skip ``skips`` actions."""
        self._batches[self._next_batch] = _Batch(future, env_ids, skips)
        self._batch_of[env_ids] = self._next_batch
        self._next_batch += 1

    def waiting(self, env_ids: EnvIds) -> EnvIds:
        """The envs among ``env_ids`` that wait for a chunk in flight."""
        waiting: EnvIds = env_ids[self._batch_of[env_ids] >= 0]
        return waiting

    def cancel(self, env_ids: EnvIds | None = None) -> None:
        """Forget the chunks in flight for ``env_ids`` (``None``: all), e.g. after a reset."""
        if env_ids is None:
            self._batch_of[:] = -1
        else:
            self._batch_of[env_ids] = -1
        self._drop_unused()

    def take(self, env_ids: EnvIds) -> list[tuple[EnvIds, torch.Tensor]]:
        """Wait for the chunks of those ``env_ids`` that have one in flight and return them as
        ``(env_ids, chunk)`` pieces with the elapsed actions cut off.

        Raises:
            whatever the background request raised (its envs are then no longer waiting).
            ActionError: a chunk is not longer than the actions that elapsed while it was in flight.
        """
        waiting = self.waiting(env_ids)
        pieces: list[tuple[EnvIds, torch.Tensor]] = []
        try:
            for batch_id in np.unique(self._batch_of[waiting]).tolist():
                batch = self._batches[batch_id]
                ids = waiting[self._batch_of[waiting] == batch_id]
                pieces.extend(_pieces(batch, ids, batch.future.result()))
        finally:
            self._batch_of[waiting] = -1
            self._drop_unused()
        return pieces

    def _drop_unused(self) -> None:
        used = set(np.unique(self._batch_of[self._batch_of >= 0]).tolist())
        for batch_id in [b for b in self._batches if b not in used]:
            del self._batches[batch_id]


def _pieces(batch: _Batch, ids: EnvIds, chunk: torch.Tensor) -> list[tuple[EnvIds, torch.Tensor]]:
    rows = np.searchsorted(batch.env_ids, ids)
    skips = batch.skips[rows]
    pieces = []
    for skip in np.unique(skips).tolist():
        if chunk.shape[1] <= skip:
            raise ActionError(
                f"a prefetched chunk of {chunk.shape[1]} actions has none left after the {skip} steps that "
                f"elapsed while it was in flight: lower prefetch_steps below the chunk length"
            )
        selected = skips == skip
        index = torch.from_numpy(rows[selected]).to(chunk.device, non_blocking=True)
        pieces.append((ids[selected], chunk.index_select(0, index)[:, skip:]))
    return pieces
