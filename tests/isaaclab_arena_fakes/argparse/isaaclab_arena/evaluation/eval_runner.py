"""Older ``eval_runner``: JSON jobs; ``policy_config_dict`` gets ``num_envs`` when ``config_class`` has that field,
then ``policy_cls.from_dict(dict)``; ``policy.close()`` always, in a ``finally``, before the env goes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from isaaclab_arena.evaluation.policy_runner import get_policy_cls, rollout_policy


def get_policy_from_job(job: dict[str, Any]) -> Any:
    policy_cls = get_policy_cls(job["policy_type"])
    config = dict(job.get("policy_config_dict", {}))
    num_envs = job["arena_env_args"].get("num_envs", 1)
    if policy_cls.config_class is not None:
        if "num_envs" in {field.name for field in dataclasses.fields(policy_cls.config_class)}:
            config["num_envs"] = num_envs
        return policy_cls.from_dict(config)
    raise NotImplementedError("policies without config_class go through argparse")


def run_jobs(config: dict[str, Any], make_env: Callable[[dict[str, Any]], Any]) -> list[int]:
    episodes = []
    for job in config["jobs"]:
        policy = get_policy_from_job(job)
        env = None
        try:
            env = make_env(job)
            episodes.append(rollout_policy(env, policy, job.get("language_instruction"),
                                           job.get("num_steps"), job.get("num_episodes")))
        finally:
            policy.close()
            if env is not None:
                env.close()
    return episodes
