"""Deterministic test policies for the reference server: the dummy rules of the golden captures.

The golden replies in ``shared/golden/openvla`` were recorded from the real ``deploy.py`` servers
running these rules, so a client can check the exact values it gets back:

- OpenVLA: ``[mean R/255, mean G/255, mean B/255, height, width, len(instruction),
  1.0 if unnorm_key else 0.0]``, float64 ``(7,)``.
- OFT: ``chunk_size`` rows; row ``i`` is ``[mean R/255, mean G/255, mean B/255, height, width,
  len(instruction), number of keys containing "wrist" + sum(state)] + i``, float64. With
  ``action_dim`` other than 7 the base row is cut or padded with zeros before adding ``i``.

Means are over the ``full_image``/``image`` pixels per channel. :class:`NullPolicy` replies zeros
at no cost (for measuring a client alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _image_features(image: Any, instruction: Any) -> list[float]:
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {pixels.shape}")
    channels = pixels.reshape(-1, 3)
    count = channels.shape[0]
    # Integer channel sums are exact, so this equals pixels.mean(axis=(0, 1)) / 255 bit for bit (10x faster).
    means = [float(np.float64(channels[:, c].sum(dtype=np.uint64)) / count / 255) for c in range(3)]
    return [*means, float(pixels.shape[0]), float(pixels.shape[1]), float(len(instruction))]


class DummyOpenVlaPolicy:
    """OpenVLA's rule: one float64 ``(7,)`` action from ``image``, ``instruction``, ``unnorm_key``."""

    def __call__(self, payload: Mapping[str, Any]) -> NDArray[Any]:
        features = _image_features(payload["image"], payload["instruction"])
        return np.array([*features, 1.0 if payload.get("unnorm_key") else 0.0], dtype=np.float64)


class DummyOftPolicy:
    """OFT's rule: a chunk of ``chunk_size`` float64 ``(action_dim,)`` actions, as a list."""

    def __init__(self, chunk_size: int = 8, action_dim: int = 7) -> None:
        if chunk_size < 1 or action_dim < 1:
            raise ValueError(f"chunk_size and action_dim must be >= 1, got {chunk_size}, {action_dim}")
        self.chunk_size = chunk_size
        self.action_dim = action_dim

    def __call__(self, payload: Mapping[str, Any]) -> list[NDArray[Any]]:
        features = _image_features(payload["full_image"], payload["instruction"])
        wrist_count = sum(1 for key in payload if "wrist" in key)
        state_sum = float(np.sum(payload["state"])) if "state" in payload else 0.0
        base = np.zeros(self.action_dim, dtype=np.float64)
        row = np.array([*features, wrist_count + state_sum], dtype=np.float64)[: self.action_dim]
        base[: len(row)] = row
        return [base + i for i in range(self.chunk_size)]


class NullPolicy:
    """A constant zero reply for every payload, unchecked: a request costs the server nothing but
    the wire (``arena-adapters serve openvla --policy null``).

    Replies a float64 ``(action_dim,)`` action (``variant="openvla"``, 7 wide) or a list of
    ``chunk_size`` of them (``"oft"``), like the dummy policies.
    """

    def __init__(self, variant: str = "openvla", chunk_size: int = 8, action_dim: int = 7) -> None:
        if chunk_size < 1 or action_dim < 1:
            raise ValueError(f"chunk_size and action_dim must be >= 1, got {chunk_size}, {action_dim}")
        action = np.zeros(action_dim if variant == "oft" else 7, dtype=np.float64)
        self._reply: NDArray[Any] | list[NDArray[Any]] = [action] * chunk_size if variant == "oft" else action

    def __call__(self, payload: Mapping[str, Any]) -> NDArray[Any] | list[NDArray[Any]]:
        return self._reply
