"""openpi replies -> action chunks ``(k, H, action_dim)`` float32 on the env device.

Each reply is a map with ``actions`` ``(H, D)`` in any float dtype (H is whatever the model
predicts: 10, 15, 50, ...). All replies of one query must agree on ``(H, D)``. With
``action_dim`` set, the first ``action_dim`` columns are used (for envs with fewer action dims
than the model); without it, ``D`` is used as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.layouts import ActionLayout
from arena_adapters.observations import describe
from arena_adapters.parts import Query

_NUMERIC_KINDS = "fiu"


class OpenpiActions:
    """:class:`~arena_adapters.parts.ActionTranslator` for openpi replies.

    Args:
        action_dim: use the first ``action_dim`` columns of each chunk (``None``: all of them).
        actions_key: the reply key holding the chunk (``"actions"``).
    """

    def __init__(self, action_dim: int | None = None, actions_key: str = "actions") -> None:
        if action_dim is not None and (not isinstance(action_dim, int) or action_dim < 1):
            raise ConfigError(f"option 'action_dim': expected an int >= 1, got {action_dim!r}")
        self.action_dim = action_dim
        self.actions_key = actions_key

    @property
    def action_layout(self) -> ActionLayout | None:
        """The width when ``action_dim`` is set; otherwise the server's reply decides (undeclared)."""
        return ActionLayout.of_width(self.action_dim) if self.action_dim is not None else None

    def translate(self, reply: Any, query: Query) -> torch.Tensor:
        """Stack the replies' chunks into a float32 ``(k, H, action_dim)`` tensor on ``query.device``.

        Raises:
            ActionError: a reply without ``actions``, a chunk that is not a 2-D numeric array, chunks
                of different shapes, too few action dims, or a wrong number of replies.
        """
        replies: Sequence[Any] = [reply] if isinstance(reply, Mapping) else reply
        if not isinstance(replies, Sequence) or len(replies) != query.size:
            count = len(replies) if isinstance(replies, Sequence) else type(reply).__name__
            raise ActionError(f"openpi: expected {query.size} replies (one per queried env), got {count}")
        ids = query.env_ids_host
        chunks = [self._chunk(r, int(ids[i]) if i < len(ids) else i) for i, r in enumerate(replies)]
        shapes = {c.shape for c in chunks}
        if len(shapes) > 1:
            by_env = ", ".join(f"env {int(ids[i])}: {c.shape}" for i, c in enumerate(chunks))
            raise ActionError(f"openpi replies disagree on the chunk shape (H, D): {by_env}")
        horizon, dim = chunks[0].shape if chunks else (0, self.action_dim or 0)
        if self.action_dim is not None:
            if dim < self.action_dim:
                raise ActionError(
                    f"openpi reply {self.actions_key!r} has {dim} action dims, fewer than action_dim={self.action_dim}"
                )
            dim = self.action_dim
        stacked = np.empty((len(chunks), horizon, dim), dtype=np.float32)
        for row, chunk in enumerate(chunks):
            stacked[row] = chunk[:, :dim]
        return torch.from_numpy(stacked).to(query.device, non_blocking=True)

    def _chunk(self, reply: Any, env_id: int) -> np.ndarray[Any, Any]:
        if not isinstance(reply, Mapping):
            raise ActionError(f"openpi reply for env {env_id}: expected a map, got {type(reply).__name__}")
        if self.actions_key not in reply:
            raise ActionError(
                f"openpi reply for env {env_id}: no {self.actions_key!r} key; keys: {sorted(map(str, reply))}"
            )
        chunk = reply[self.actions_key]
        if not isinstance(chunk, np.ndarray) or chunk.ndim != 2 or chunk.dtype.kind not in _NUMERIC_KINDS:
            raise ActionError(
                f"openpi reply for env {env_id}: {self.actions_key!r} must be a numeric (H, D) array, "
                f"got {describe(chunk)}"
            )
        if chunk.shape[0] < 1 or chunk.shape[1] < 1:
            raise ActionError(f"openpi reply for env {env_id}: empty action chunk of shape {chunk.shape}")
        return chunk
