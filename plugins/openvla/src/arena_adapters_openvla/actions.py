"""The action translator: OpenVLA / OFT replies -> a float32 ``(k, K, action_dim)`` tensor.

Each env's reply is one of the forms the upstream servers send:

- a bare array ``(D,)``: OpenVLA's single action, a chunk of length ``K = 1``;
- a list of ``K`` arrays ``(D,)``: an OFT chunk (LIBERO 8x7, ALOHA 25x14, BRIDGE 5x7);
- an array ``(K, D)``, accepted as well.

``K`` and ``D`` come from the replies (all envs of one query must agree). When the env's action
layout differs from the model's, ``action_select`` picks and orders reply components and
``action_dim`` pads the result with zeros up to the env's width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.layouts import ActionLayout
from arena_adapters.observations import describe
from arena_adapters.parts import Query


def parse_indices(value: Any) -> tuple[int, ...] | None:
    """``"0,1,2,6"`` or ``[0, 1, 2, 6]`` -> ``(0, 1, 2, 6)``; ``None``/``""`` -> ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        indices = tuple(int(item) for item in items if not isinstance(item, str) or item.strip())
    except (TypeError, ValueError):
        raise ConfigError(
            f"option 'action_select': expected reply indices like '0,1,2,3,4,5,6', got {value!r}"
        ) from None
    if not indices or min(indices) < 0:
        raise ConfigError(f"option 'action_select': expected non-negative indices, got {value!r}")
    return indices


class OpenVlaActions:
    """Turns per-env OpenVLA / OFT replies into an action chunk tensor on the env device.

    Args:
        action_select: reply components to keep, in env order (e.g. ``"0,1,2,3,4,5,6"``); all if unset.
        action_dim: the env's action width; the (selected) reply is padded with zeros up to it.
            Unset: the reply's width.
    """

    def __init__(self, action_select: Any = None, action_dim: int | None = None) -> None:
        self.select = parse_indices(action_select)
        if action_dim is not None and action_dim < 1:
            raise ConfigError(f"option 'action_dim': expected an int >= 1, got {action_dim!r}")
        self.action_dim = action_dim
        if self.select is not None and action_dim is not None and len(self.select) > action_dim:
            raise ConfigError(
                f"option 'action_select' picks {len(self.select)} components, more than action_dim={action_dim}"
            )

    @property
    def action_layout(self) -> ActionLayout | None:
        """The width once ``action_select`` or ``action_dim`` fix it; otherwise the model decides
        (OpenVLA's 7 end-effector deltas and gripper, an OFT model's own width): undeclared."""
        if self.select is None and self.action_dim is None:
            return None
        return ActionLayout.of_width(self.action_dim or len(self.select or ()))

    def translate(self, reply: Any, query: Query) -> torch.Tensor:
        """Return float32 ``(query.size, K, action_dim)`` on ``query.device``.

        Raises:
            ActionError: a reply is not an action or chunk, the envs' chunks differ in shape, or the
                layout options do not fit the reply.
        """
        if not isinstance(reply, Sequence) or isinstance(reply, str) or len(reply) != query.size:
            raise ActionError(f"expected one reply per queried env ({query.size}), got {describe(reply)}")
        chunks = [_chunk_of(item, index) for index, item in enumerate(reply)]
        shapes = {chunk.shape for chunk in chunks}
        if len(shapes) > 1:
            raise ActionError(f"the queried envs got chunks of different shapes (K, D): {sorted(shapes)}")
        stacked = np.stack(chunks).astype(np.float32, copy=False)
        return torch.from_numpy(self._layout(stacked)).to(query.device)

    def _layout(self, chunk: NDArray[Any]) -> NDArray[Any]:
        width = chunk.shape[-1]
        if self.select is not None:
            if max(self.select) >= width:
                raise ActionError(f"option 'action_select' {list(self.select)} exceeds the reply's {width} components")
            chunk = chunk[..., list(self.select)]
            width = chunk.shape[-1]
        if self.action_dim is None or self.action_dim == width:
            return np.ascontiguousarray(chunk)
        if self.action_dim < width:
            raise ActionError(
                f"the reply has {width} action components, more than action_dim={self.action_dim}; "
                f"pick components with action_select"
            )
        padded = np.zeros((*chunk.shape[:-1], self.action_dim), np.float32)
        padded[..., :width] = chunk
        return padded


def _chunk_of(item: Any, index: int) -> NDArray[Any]:
    """One env's reply as a ``(K, D)`` array."""
    if isinstance(item, np.ndarray):
        array = item
    elif isinstance(item, (list, tuple)) and item and all(isinstance(row, np.ndarray) for row in item):
        try:
            array = np.stack(item)
        except ValueError as exc:
            raise ActionError(f"reply {index}: the chunk's rows differ in shape: {exc}") from exc
    else:
        raise ActionError(f"reply {index}: expected an action array or a list of them, got {_summary(item)}")
    if array.dtype.kind not in "fiu" or array.ndim not in (1, 2) or array.size == 0:
        raise ActionError(f"reply {index}: expected numeric (D,) or (K, D) actions, got {describe(array)}")
    return array.reshape(1, -1) if array.ndim == 1 else array


def _summary(item: Any) -> str:
    text = repr(item)
    return f"{type(item).__name__} {text[:120]}"
