"""What the runner needs from a vectorized environment: Isaac Lab's ``ManagerBasedRLEnv`` contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

Observation = dict[str, Any]
"""Nested dicts of tensors whose first axis is ``num_envs`` (groups ``policy``, ``camera_obs``, ...)."""

Extras = dict[str, Any]
"""The ``extras``/``info`` dict of ``step``; see :class:`VectorEnv` for the keys the runner reads."""


@runtime_checkable
class VectorEnv(Protocol):
    """A batch of ``num_envs`` environments stepped together, as Isaac Lab's ``ManagerBasedRLEnv``.

    - ``reset()`` returns ``(obs, extras)`` for fresh episodes in every env.
    - ``step(actions)`` takes ``(num_envs, action_dim)`` actions on ``device`` and returns
      ``(obs, reward, terminated, truncated, extras)``; ``terminated``/``truncated`` are ``(num_envs,)``
      bool tensors. Envs that finished are reset inside ``step()``: ``obs`` is already the first
      observation of their next episode.
    - ``extras["success"]`` (optional): ``(num_envs,)`` bool, which of the episodes that ended in this
      step succeeded. Without it, an episode that ends ``terminated`` (not truncated) counts as a success.
    - ``cfg.task_description`` (optional): the task instruction handed to the policy.
    """

    num_envs: int
    device: str
    max_episode_length: int

    def reset(self) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Start new episodes everywhere."""
        ...

    def step(
        self, actions: torch.Tensor
    ) -> tuple[Mapping[str, Any], torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, Any]]:
        """Advance every env one step."""
        ...

    def close(self) -> None:
        """Release the environment."""
        ...


def task_description_of(env: Any) -> str:
    """The env's task description (``env.unwrapped.cfg.task_description``), or ``""``."""
    base = getattr(env, "unwrapped", env)
    cfg = getattr(base, "cfg", None)
    text = getattr(cfg, "task_description", None) or getattr(base, "task_description", None)
    return text if isinstance(text, str) else ""
