"""Older ``policy_runner``: the policy adds its own flags (``add_args_to_parser``) and builds itself (``from_args``).

Order (ARENA.md section 3): shared parser + runner flags, ``parse_known_args``, ``get_policy_cls``, environment
sub-parsers, ``policy_cls.add_args_to_parser(parser)``, ``parse_args``, ``policy_cls.from_args(args)``. Rollout
as in the typed generation but with the task description from ``--language_instruction`` or
``env.unwrapped.cfg.task_description``. At the end ``shutdown_remote(kill_server=args.remote_kill_on_exit)``
only if ``is_remote`` (the flag is defined nowhere in Arena), then ``env.close()``; never ``policy.close()``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from isaaclab_arena.assets.registries import PolicyRegistry


def get_policy_cls(policy_type: str) -> Any:
    if PolicyRegistry().is_registered(policy_type):
        return PolicyRegistry().get_policy(policy_type)
    assert "." in policy_type, f"policy_type must be a dotted Python import path (module.Class), got {policy_type!r}"
    module_name, class_name = policy_type.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def rollout_policy(env: Any, policy: Any, language_instruction: str | None, num_steps: int | None,
                   num_episodes: int | None) -> int:
    try:
        obs, _ = env.reset()
        policy.reset()
        policy.set_task_description(language_instruction or env.unwrapped.cfg.task_description)
        steps = episodes = 0
        while (num_steps is None or steps < num_steps) and (num_episodes is None or episodes < num_episodes):
            with torch.inference_mode():
                actions = policy.get_action(env, obs)
                obs, _, terminated, truncated, _ = env.step(actions)
                done = terminated | truncated
                if done.any():
                    env_ids = done.nonzero().flatten()
                    policy.reset(env_ids=env_ids)
                    episodes += int(env_ids.numel())
            steps += 1
        return episodes
    except Exception as error:
        raise RuntimeError(f"Error rolling out policy: {error}") from error


def main(argv: Sequence[str], make_env: Callable[[argparse.Namespace], Any]) -> tuple[Any, Any, int]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--num_envs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--policy_type", required=True)
    parser.add_argument("--num_steps", type=int, default=None)
    parser.add_argument("--num_episodes", type=int, default=None)
    parser.add_argument("--language_instruction", default=None)
    known, _ = parser.parse_known_args(list(argv))
    policy_cls = get_policy_cls(known.policy_type)
    subparsers = parser.add_subparsers(dest="environment", required=True)
    subparsers.add_parser("fake_droid").add_argument("--embodiment", default="droid_abs_joint_pos")
    policy_cls.add_args_to_parser(parser)
    args = parser.parse_args(list(argv))
    policy = policy_cls.from_args(args)
    env = make_env(args)
    episodes = rollout_policy(env, policy, args.language_instruction, args.num_steps, args.num_episodes)
    if policy.is_remote:
        policy.shutdown_remote(kill_server=args.remote_kill_on_exit)
    env.close()
    return policy, env, episodes
