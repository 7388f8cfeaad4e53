"""Tiny in-process policies for tests, benchmarks and examples of the ``local`` adapter."""

from __future__ import annotations

import time
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


class SlowConstantPolicy:
    """Zero chunks ``(k, horizon, action_dim)`` after sleeping ``latency_s`` (a stand-in for a model)."""

    def __init__(self, action_dim: int = 8, horizon: int = 16, latency_s: float = 0.0) -> None:
        self.action_dim, self.horizon, self.latency_s = action_dim, horizon, latency_s

    def __call__(self, observation: Mapping[str, Any]) -> torch.Tensor:
        if self.latency_s:
            time.sleep(self.latency_s)
        return torch.zeros(queried_envs(observation), self.horizon, self.action_dim)
