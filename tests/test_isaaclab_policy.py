"""``arena_adapters.isaaclab.AdapterPolicy`` in a loop shaped like Isaac Lab Arena's policy runner,
against a fake env that follows Isaac Lab's ``ManagerBasedRLEnv`` contract."""

from __future__ import annotations

import abc
import argparse
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import arena_adapters.integrations.isaaclab_legacy as isaaclab_module
from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.isaaclab import AdapterPolicy, AdapterPolicyConfig, StandalonePolicyBase

NUM_JOINTS = 7


class FakeManagerBasedRLEnv:
    """The parts of Isaac Lab's ``ManagerBasedRLEnv`` a policy runner touches.

    - ``reset(seed=None, env_ids=None, options=None) -> (obs, extras)``;
    - ``step(action) -> (obs, reward, terminated, truncated, extras)`` with ``(num_envs,)`` bool
      ``terminated``/``truncated``; envs that are done are reset INSIDE ``step()`` and the returned
      observation is already their first one; ``extras["time_outs"]`` is ``truncated``;
    - observation groups ``policy`` and ``camera_obs``, num_envs first, on ``device``;
    - ``num_envs``, ``device`` (str), ``max_episode_length``, ``episode_length_buf``, ``action_space``
      with the batched shape, ``unwrapped`` and ``cfg.task_description``.

    Env ``i`` terminates after ``lengths[i]`` steps (out of phase), or is truncated at
    ``max_episode_length``. ``joint_pos[:, 0]`` carries the env id so a policy can see which envs
    it was asked about.
    """

    def __init__(self, lengths: list[int], device: str = "cpu", max_episode_length: int = 50) -> None:
        self.num_envs = len(lengths)
        self.device = device
        self.max_episode_length = max_episode_length
        self.lengths = torch.tensor(lengths, device=device)
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=device)
        self.cfg = types.SimpleNamespace(task_description="put the cube in the bowl")
        self.action_space = types.SimpleNamespace(shape=(self.num_envs, NUM_JOINTS + 1))
        self.actions: list[torch.Tensor] = []
        self.internal_resets: list[list[int]] = []

    @property
    def unwrapped(self) -> FakeManagerBasedRLEnv:
        return self

    def reset(self, seed: int | None = None, env_ids: torch.Tensor | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        self.episode_length_buf.zero_()
        return self._observations(), {}

    def step(self, action: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor,
                                                  dict[str, Any]]:
        self.actions.append(action)
        self.episode_length_buf += 1
        terminated = self.episode_length_buf >= self.lengths
        truncated = (self.episode_length_buf >= self.max_episode_length) & ~terminated
        reset_ids = (terminated | truncated).nonzero().flatten()
        if len(reset_ids):
            self.episode_length_buf[reset_ids] = 0
            self.internal_resets.append(reset_ids.tolist())
        reward = terminated.float()
        return self._observations(), reward, terminated, truncated, {"time_outs": truncated, "log": {}}

    def _observations(self) -> dict[str, Any]:
        n = self.num_envs
        joints = torch.zeros(n, NUM_JOINTS, device=self.device)
        joints[:, 0] = torch.arange(n, device=self.device, dtype=torch.float32)
        joints[:, 1] = self.episode_length_buf.float()
        image = torch.full((n, 12, 16, 3), 90, dtype=torch.uint8, device=self.device)
        return {
            "policy": {"joint_pos": joints, "gripper_pos": torch.zeros(n, 1, device=self.device)},
            "camera_obs": {"external_camera_rgb": image, "wrist_camera_rgb": image.clone()},
        }


class RecordingModel:
    """A local-adapter model that records which envs it is queried for and which it is told to reset."""

    def __init__(self, horizon: int = 4) -> None:
        self.horizon = horizon
        self.queried: list[list[int]] = []
        self.instructions: list[str] = []
        self.resets: list[list[int] | None] = []

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        joints = observation["policy"]["joint_pos"]
        self.queried.append(joints[:, 0].long().tolist())
        self.instructions.extend(observation.get("instruction", [""]))
        chunk = torch.zeros(len(joints), self.horizon, NUM_JOINTS + 1, device=joints.device)
        chunk[..., 0] = joints[:, :1]  # action column 0 = env id
        return chunk

    def reset(self, env_ids: np.ndarray | None) -> None:
        self.resets.append(None if env_ids is None else env_ids.tolist())


def arena_style_rollout(env: Any, policy: Any, num_episodes: int, trace: list[dict[str, Any]] | None = None) -> int:
    """The loop of Arena's ``rollout_policy``: reset, then get_action / step / partial policy resets."""
    obs, _ = env.reset()
    policy.reset()
    policy.set_task_description(env.unwrapped.cfg.task_description)
    completed = 0
    while True:
        with torch.inference_mode():
            actions = policy.get_action(env, obs)
            obs, _, terminated, truncated, _ = env.step(actions)
            if terminated.any() or truncated.any():
                env_ids = (terminated | truncated).nonzero().flatten()
                policy.reset(env_ids=env_ids)
                if trace is not None:
                    trace.append({"env_ids": env_ids.tolist(), "remaining": policy.policy.scheduler.remaining()})
                completed += env_ids.shape[0]
                if completed >= num_episodes:
                    break
    return completed


def test_partial_resets_reach_the_scheduler_and_the_model() -> None:
    env = FakeManagerBasedRLEnv(lengths=[3, 5, 6, 9])
    model = RecordingModel(horizon=50)  # chunks outlast episodes: only reset envs are queried again
    policy = AdapterPolicy(AdapterPolicyConfig(adapter="local", options={"policy": model}))
    trace: list[dict[str, Any]] = []
    completed = arena_style_rollout(env, policy, num_episodes=12, trace=trace)
    policy.close()
    assert completed >= 12
    assert model.resets[0] is None  # policy.reset() at the start: all envs
    assert model.resets[1:] == [entry["env_ids"] for entry in trace] == env.internal_resets
    assert any(len(entry["env_ids"]) < env.num_envs for entry in trace)  # resets really are partial
    for entry in trace:
        assert (entry["remaining"][entry["env_ids"]] == 0).all()  # their chunks were dropped
        others = np.setdiff1d(np.arange(env.num_envs), entry["env_ids"])
        assert (entry["remaining"][others] > 0).all()  # the others keep theirs
    # the first query is for all envs; each later one for exactly the envs reset the step before
    assert model.queried[0] == [0, 1, 2, 3]
    assert model.queried[1:] == env.internal_resets[:-1]
    assert set(model.instructions) == {"put the cube in the bowl"}


def test_out_of_phase_chunks_and_resets_mix() -> None:
    env = FakeManagerBasedRLEnv(lengths=[3, 5, 6, 9])
    model = RecordingModel(horizon=4)
    policy = AdapterPolicy(AdapterPolicyConfig(adapter="local", options={"policy": model, "execute_steps": 4}))
    arena_style_rollout(env, policy, num_episodes=12)
    policy.close()
    assert len(model.queried) < len(env.actions)  # chunks are replayed between queries
    assert any(0 < len(ids) < env.num_envs for ids in model.queried)  # partial batches


def test_actions_have_the_env_shape_dtype_and_device() -> None:
    env = FakeManagerBasedRLEnv(lengths=[2, 4, 7])
    with_local = AdapterPolicy({"adapter": "local", "policy": RecordingModel(), "execute_steps": 2})
    arena_style_rollout(env, with_local, num_episodes=5)
    with_local.close()
    for action in env.actions:
        assert action.shape == (3, 8) and action.dtype == torch.float32
        assert action.device == torch.device(env.device)
        assert action[:, 0].tolist() == [0.0, 1.0, 2.0]  # each env got its own row


def test_a_wrong_action_width_is_reported() -> None:
    env = FakeManagerBasedRLEnv(lengths=[2, 3])
    env.action_space = types.SimpleNamespace(shape=(2, 12))
    policy = AdapterPolicy({"adapter": "local", "policy": RecordingModel()})
    with pytest.raises(ActionError, match=r"returns actions of width 8, the env expects 12"):
        arena_style_rollout(env, policy, num_episodes=1)


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


@pytest.mark.parametrize("adapter", ["gr00t", "openpi", "openvla"])
def test_close_releases_the_sockets(adapter: str) -> None:
    from arena_adapters.envs.expert_server import served_expert

    with ServerProcess.for_expert(adapter) as server:
        baseline = _open_sockets()
        config = AdapterPolicyConfig(adapter=adapter, endpoint=server.endpoint,
                                     options=dict(served_expert(adapter).client_options))
        policy = AdapterPolicy(config)
        arena_style_rollout(FakeManagerBasedRLEnv(lengths=[2, 3, 4, 5]), policy, num_episodes=6)
        assert _open_sockets() > baseline
        policy.close()
        policy.close()  # idempotent
        assert _open_sockets() == baseline


def _arena_like_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_envs", type=int, default=1)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--policy_type", required=True)
    return parser


def test_construction_from_arena_cli_arguments() -> None:
    argv = ["--policy_type", "arena_adapters.isaaclab.AdapterPolicy", "--num_envs", "3",
            "--adapter", "local", "--policy", "arena_adapters.envs.reach_serving:random_policy",
            "--execute_steps", "4", "--strategy", "lockstep", "--adapter_option", "ensemble_decay=0.5",
            "--instruction", "stack the blocks"]
    parser = _arena_like_parser()
    # Arena resolves --policy_type by importing the module and taking the class
    policy_type = "arena_adapters.isaaclab.AdapterPolicy"
    module_name, class_name = policy_type.rsplit(".", 1)
    policy_cls = getattr(importlib.import_module(module_name), class_name)
    args = policy_cls.add_args_to_parser(parser, argv).parse_args(argv)
    policy = policy_cls.from_args(args)
    assert isinstance(policy, AdapterPolicy)
    assert policy.config.adapter == "local" and policy.config.num_envs == 3
    assert policy.config.instruction == "stack the blocks"
    assert policy.config.options == {"policy": "arena_adapters.envs.reach_serving:random_policy",
                                     "execute_steps": "4", "strategy": "lockstep", "ensemble_decay": "0.5"}
    assert policy.policy.instruction == "stack the blocks"
    assert policy.set_task_description("something else") == "stack the blocks"  # the config's instruction wins
    policy.close()


def test_flags_arena_already_has_are_not_redeclared() -> None:
    parser = _arena_like_parser()
    parser.add_argument("--timeout", type=float, default=1.0)  # pretend Arena had --timeout
    argv = ["--policy_type", "x.Y", "--adapter", "openpi", "--endpoint", "ws://127.0.0.1:1",
            "--adapter_option", "timeout=7", "--max_concurrency", "2"]
    args = AdapterPolicy.add_args_to_parser(parser, argv).parse_args(argv)
    assert args.timeout == 1.0 and args.device == "cuda:0"
    options = {k: v for k, v in vars(args).items() if k.startswith("adapter_option__") and v is not None}
    assert options == {"adapter_option__max_concurrency": "2"}
    assert args.adapter_option == ["timeout=7"] and args.endpoint == "ws://127.0.0.1:1"
    assert args.remote_kill_on_exit is False
    with pytest.raises(SystemExit):
        AdapterPolicy.add_args_to_parser(_arena_like_parser(), []).parse_args(["--policy_type", "x.Y"])


def test_construction_from_a_config_dict() -> None:
    model = RecordingModel()
    policy = AdapterPolicy.from_dict({"adapter": "local", "num_envs": 2, "policy": model,
                                      "options": {"execute_steps": 3}})
    assert policy.config.options == {"execute_steps": 3, "policy": model} and policy.config.num_envs == 2
    policy.close()
    with pytest.raises(ConfigError, match="'adapter' is required"):
        AdapterPolicy.from_dict({"endpoint": "tcp://x"})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['bogus'\]"):
        AdapterPolicy.from_dict({"adapter": "local", "policy": model, "bogus": 1})


def test_works_without_isaaclab_arena() -> None:
    assert "isaaclab_arena" not in sys.modules
    assert issubclass(AdapterPolicy, StandalonePolicyBase)
    policy = AdapterPolicy({"adapter": "local", "policy": RecordingModel()})
    assert policy.is_remote and not policy.has_length() and policy.length() is None
    policy.shutdown_remote(kill_server=True)
    with pytest.raises(Exception, match="closed"):
        policy.get_action(None, FakeManagerBasedRLEnv(lengths=[1])._observations())


def test_subclasses_arena_policy_base_when_isaaclab_arena_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    class ArenaPolicyBase(abc.ABC):  # stands in for isaaclab_arena.policy.policy_base.PolicyBase
        config_class: type | None = None

        def __init__(self, config: Any) -> None:
            self.config = config

        @classmethod
        def from_dict(cls, config_dict: dict[str, Any]) -> Any:
            return cls(cls.config_class(**config_dict))  # type: ignore[misc]

        @abc.abstractmethod
        def get_action(self, env: Any, observation: Any) -> torch.Tensor: ...

        @staticmethod
        @abc.abstractmethod
        def add_args_to_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser: ...

        @staticmethod
        @abc.abstractmethod
        def from_args(args: argparse.Namespace) -> Any: ...

    fake = {name: types.ModuleType(name) for name in
            ("isaaclab_arena", "isaaclab_arena.policy", "isaaclab_arena.policy.policy_base")}
    fake["isaaclab_arena.policy.policy_base"].PolicyBase = ArenaPolicyBase  # type: ignore[attr-defined]
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("isaaclab_under_arena", Path(isaaclab_module.__file__))
    assert spec is not None and spec.loader is not None
    under_arena = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, under_arena)
    spec.loader.exec_module(under_arena)
    assert issubclass(under_arena.AdapterPolicy, ArenaPolicyBase)
    policy = under_arena.AdapterPolicy.from_dict({"adapter": "local", "policy": RecordingModel(), "execute_steps": 2})
    env = FakeManagerBasedRLEnv(lengths=[2, 3])
    assert arena_style_rollout(env, policy, num_episodes=3) >= 3
    policy.close()
