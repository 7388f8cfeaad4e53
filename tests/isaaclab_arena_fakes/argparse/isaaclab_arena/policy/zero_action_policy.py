"""A first-party registered policy of the older generation."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch

from isaaclab_arena.assets.register import register_policy
from isaaclab_arena.policy.policy_base import PolicyBase


@dataclass
class ZeroActionPolicyConfig:
    num_envs: int = 1


@register_policy
class ZeroActionPolicy(PolicyBase):
    name = "zero_action"
    config_class = ZeroActionPolicyConfig

    def get_action(self, env: Any, observation: Any) -> torch.Tensor:
        return torch.zeros(env.unwrapped.action_space.shape, device=env.unwrapped.device)

    @staticmethod
    def add_args_to_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return parser

    @staticmethod
    def from_args(args: argparse.Namespace) -> ZeroActionPolicy:
        return ZeroActionPolicy(ZeroActionPolicyConfig(num_envs=args.num_envs))
