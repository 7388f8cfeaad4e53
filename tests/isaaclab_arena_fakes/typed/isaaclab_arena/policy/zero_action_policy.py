"""A first-party registered policy: found by name because Arena imports its own policy package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from isaaclab_arena.assets.register import register_policy
from isaaclab_arena.policy.policy_base import PolicyBase, PolicyCfg


@dataclass
class ZeroActionPolicyCfg(PolicyCfg):
    num_envs: int = 1


@register_policy
class ZeroActionPolicy(PolicyBase[ZeroActionPolicyCfg]):
    name = "zero_action"

    def get_action(self, env: Any, observation: Any) -> torch.Tensor:
        return torch.zeros(env.unwrapped.action_space.shape, device=env.unwrapped.device)
