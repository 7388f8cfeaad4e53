"""Tiny in-process policies for tests, benchmarks and examples of the ``local`` adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def queried_envs(observation: Mapping[str, Any]) -> int:
    """The number of envs in a (nested) observation: the first axis of its first tensor."""
    for value in observation.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
        if isinstance(value, Mapping):
            return queried_envs(value)
    raise ValueError("observation holds no tensor")


def constant_chunk(observation: Mapping[str, Any]) -> torch.Tensor:
    """A ``(k, 4, 2)`` chunk of 0.5 for the ``k`` queried envs."""
    return torch.full((queried_envs(observation), 4, 2), 0.5)
