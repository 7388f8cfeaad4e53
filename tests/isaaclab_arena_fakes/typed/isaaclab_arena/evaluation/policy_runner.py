"""Typed ``policy_runner``: flags generated from the policy's registered config, then ``rollout_policy``.

Call sequence (ARENA.md section 1): ``env.reset()``, ``policy.reset()``,
``policy.set_task_description(env.unwrapped.get_language_instruction())``, then under
``torch.inference_mode()``: ``get_action(env, obs)``, ``env.step``, ``policy.reset(env_ids=...)`` for done
envs. At the end: ``shutdown_remote`` only if ``is_remote`` (reading the undefined
``remote_kill_on_exit``), ``env.close()``; never ``policy.close()``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from isaaclab_arena.assets.registries import PolicyRegistry
from isaaclab_arena.cli.dataclass_cli import (
    add_dataclass_cli_args,
    assert_cli_defaults_match_dataclass,
    dataclass_from_cli,
)

SHARED_FIELDS = {"device", "num_envs"}


def get_policy_cls(policy_type: str) -> type:
    if PolicyRegistry().is_registered(policy_type):
        return PolicyRegistry().get_policy(policy_type)
    assert "." in policy_type, (
        f"policy_type must be a dotted Python import path (module.Class) or a registered name, got {policy_type!r}"
    )
    module_name, class_name = policy_type.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def add_policy_cli_args(parser: argparse.ArgumentParser, policy_cls: type) -> None:
    cfg_type = PolicyRegistry().get_policy_cfg_type(policy_cls)
    shared = {field.name for field in dataclasses.fields(cfg_type)} & SHARED_FIELDS
    assert_cli_defaults_match_dataclass(parser, cfg_type, shared)
    add_dataclass_cli_args(parser, cfg_type, excluded_fields=shared)


def shared_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--num_envs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--enable_cameras", action="store_true")
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--policy_type", default=None)
    parser.add_argument("--num_steps", type=int, default=None)
    parser.add_argument("--num_episodes", type=int, default=None)
    parser.add_argument("--language_instruction", default=None)
    return parser


def rollout_policy(env: Any, policy: Any, num_steps: int | None, num_episodes: int | None) -> int:
    try:
        obs, _ = env.reset()
        policy.reset()
        policy.set_task_description(env.unwrapped.get_language_instruction())
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
    """Returns (policy, env, episodes) so a test can look at them; Isaac Sim is ``make_env``."""
    parser = shared_parser()
    known, _ = parser.parse_known_args(list(argv))
    assert known.policy_type is not None, "--policy_type is required."
    policy_cls = get_policy_cls(known.policy_type)
    subparsers = parser.add_subparsers(dest="environment", required=True)
    environment = subparsers.add_parser("fake_droid")
    environment.add_argument("--embodiment", default="droid_abs_joint_pos")
    add_policy_cli_args(parser, policy_cls)
    args = parser.parse_args(list(argv))
    policy = policy_cls(dataclass_from_cli(PolicyRegistry().get_policy_cfg_type(policy_cls), args))
    env = make_env(args)
    episodes = rollout_policy(env, policy, args.num_steps, args.num_episodes)
    if policy.is_remote:
        policy.shutdown_remote(kill_server=args.remote_kill_on_exit)
    env.close()
    return policy, env, episodes
