"""The built-in ``local`` adapter end to end through load_policy, translators and scheduler."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import arena_adapters as aa
from arena_adapters.errors import ActionError, AdapterError, ConfigError, ObservationError


class ToyPolicy:
    """Chunk row e, step i = joint_pos[e] + 10 * i; records what it was asked."""

    def __init__(self, horizon: int = 6) -> None:
        self.horizon = horizon
        self.batches: list[int] = []
        self.instructions: list[list[str]] = []
        self.resets: list[Any] = []

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        joints = observation["policy"]["joint_pos"]
        self.batches.append(joints.shape[0])
        self.instructions.append(observation.get("instruction", []))
        steps = 10.0 * torch.arange(self.horizon, dtype=joints.dtype, device=joints.device)
        return joints.unsqueeze(1) + steps.view(1, -1, 1)

    def reset(self, env_ids: Any) -> None:
        self.resets.append(env_ids)


def observation(num_envs: int, device: str = "cpu") -> dict[str, dict[str, torch.Tensor]]:
    joints = torch.arange(num_envs, dtype=torch.float32, device=device).view(-1, 1).repeat(1, 2)
    return {"policy": {"joint_pos": joints}, "camera_obs": {"rgb": torch.zeros(num_envs, 4, 4, 3, dtype=torch.uint8)}}


def test_toy_callable_gives_the_expected_actions() -> None:
    toy = ToyPolicy(horizon=6)
    with aa.load_policy("local", policy=toy, execute_steps=4) as policy:
        obs = observation(3)
        taken = [policy.get_action(obs)[:, 0].tolist() for _ in range(6)]
    assert taken == [[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32], [0, 1, 2], [10, 11, 12]]
    assert toy.batches == [3, 3]
    assert policy.stats.queries == 2 and policy.stats.env_requests == 6 and policy.stats.steps == 6
    assert len(policy.stats.latencies_s) == 2


def test_partial_resets_query_only_the_reset_envs() -> None:
    toy = ToyPolicy(horizon=8)
    policy = aa.load_policy("local", policy=toy, execute_steps=8)
    obs = observation(4)
    policy.get_action(obs)
    policy.get_action(obs)
    policy.reset(torch.tensor([2]))
    actions = policy.get_action(obs)
    assert toy.batches == [4, 1]
    assert actions[:, 0].tolist() == [20.0, 21.0, 2.0, 23.0]
    assert toy.resets[-1].tolist() == [2]


def test_instructions_reach_the_callable_per_env() -> None:
    toy = ToyPolicy()
    policy = aa.load_policy("local", policy=toy, instruction="stack the cubes", num_envs=2)
    policy.set_instruction("open the drawer", env_ids=[1])
    policy.get_action(observation(2))
    assert toy.instructions == [["stack the cubes", "open the drawer"]]


def test_policy_from_module_attribute_string() -> None:
    policy = aa.load_policy("local", policy="arena_adapters.testing.toys:constant_chunk")
    assert policy.get_action(observation(2)).tolist() == [[0.5, 0.5], [0.5, 0.5]]
    from_class = aa.load_policy("local", policy="arena_adapters.envs.reach_serving:LocalReachExpert")
    assert type(from_class.transport.policy).__name__ == "LocalReachExpert"  # type: ignore[attr-defined]


def test_two_dimensional_replies_are_one_step_chunks() -> None:
    calls: list[int] = []

    def one_action(obs: dict[str, Any]) -> np.ndarray:
        calls.append(1)
        return np.ones((obs["policy"]["joint_pos"].shape[0], 5), dtype=np.float32)

    policy = aa.load_policy("local", policy=one_action)
    for _ in range(3):
        assert policy.get_action(observation(2)).shape == (2, 5)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda obs: torch.zeros(5, 3, 2), r"expected float \(k=2, H, D\)"),
        (lambda obs: torch.zeros(2, 3, 2, dtype=torch.int64), r"returned int64 \(2, 3, 2\)"),
        (lambda obs: "no", r"not an array of actions|expected float"),
    ],
)
def test_bad_replies_are_clear_errors(reply: Any, message: str) -> None:
    policy = aa.load_policy("local", policy=reply)
    with pytest.raises(ActionError, match=message):
        policy.get_action(observation(2))


def test_config_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"option 'policy' \(for transport 'local.callable'\) is required"):
        aa.load_policy("local")
    with pytest.raises(ConfigError, match=r"option 'strategy'.*expected one of \['replay', 'lockstep', 'ensemble'\], got 'fast'"):
        aa.load_policy("local", policy=ToyPolicy(), strategy="fast")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['horizon'\] for adapter 'local'; valid options: \[.*'policy'"):
        aa.load_policy("local", policy=ToyPolicy(), horizon=3)
    with pytest.raises(ConfigError, match=r"option 'policy': expected a callable"):
        aa.load_policy("local", policy=42)
    with pytest.raises(ConfigError, match=r"option 'execute_steps'.*expected a value >= 1, got 0"):
        aa.load_policy("local", policy=ToyPolicy(), execute_steps=0)


def test_observation_batch_must_match_configuration() -> None:
    policy = aa.load_policy("local", policy=ToyPolicy(), num_envs=4)
    with pytest.raises(ObservationError, match="observation has 3 envs first, the policy was configured with num_envs=4"):
        policy.get_action(observation(3))
    with pytest.raises(ObservationError, match="holds no torch.Tensor"):
        aa.load_policy("local", policy=ToyPolicy()).get_action({"policy": {}})


def test_closed_policy_refuses_work() -> None:
    policy = aa.load_policy("local", policy=ToyPolicy())
    policy.close()
    policy.close()
    with pytest.raises(AdapterError, match="closed"):
        policy.get_action(observation(1))


def test_ensemble_strategy_through_the_policy() -> None:
    toy = ToyPolicy(horizon=3)
    policy = aa.load_policy("local", policy=toy, strategy="ensemble", ensemble_decay=0.0)
    obs = observation(1)
    first, second, third = (policy.get_action(obs)[0, 0].item() for _ in range(3))
    assert (first, second, third) == (0.0, 5.0, 10.0)  # means of {0}, {10, 0}, {20, 10, 0}
    assert toy.batches == [1, 1, 1]


def test_fetch_accounting_through_the_policy() -> None:
    """1,000 steps, episodes out of phase: each env is asked once per execute_steps of each episode."""
    num_envs, execute_steps, steps = 16, 5, 1000
    asked = np.zeros(num_envs, dtype=np.int64)

    def counting_policy(obs: dict[str, Any]) -> torch.Tensor:
        ids = obs["policy"]["env_id"].long()
        asked[ids.numpy()] += 1
        return torch.zeros(len(ids), 8, 2)

    rng = np.random.default_rng(7)
    policy = aa.load_policy("local", policy=counting_policy, execute_steps=execute_steps)
    obs = {"policy": {"env_id": torch.arange(num_envs, dtype=torch.float32)}}
    elapsed = np.zeros(num_envs, dtype=np.int64)
    length = rng.integers(3, 60, num_envs)
    ideal = np.zeros(num_envs, dtype=np.int64)
    queries_on_replay_steps = 0
    for _ in range(steps):
        due_before = len(policy.scheduler.due_envs()) if policy.scheduler is not None else num_envs
        queries = policy.stats.queries
        policy.get_action(obs)
        if due_before == 0:
            queries_on_replay_steps += policy.stats.queries - queries
        elapsed += 1
        done = np.flatnonzero(elapsed == length)
        ideal[done] += -(-length[done] // execute_steps)
        if len(done):
            policy.reset(torch.from_numpy(done))
            elapsed[done] = 0
            length[done] = rng.integers(3, 60, len(done))
    ideal += -(-elapsed // execute_steps)  # the episodes still running
    assert asked.tolist() == ideal.tolist()
    assert queries_on_replay_steps == 0


def test_paused_envs_are_not_queried_until_reset() -> None:
    toy = ToyPolicy(horizon=2)
    policy = aa.load_policy("local", policy=toy, execute_steps=2)
    policy.pause([1])  # before the first step: applied when the scheduler is made
    obs = observation(3)
    first = policy.get_action(obs)
    assert toy.batches == [2] and first[1].tolist() == [0.0, 0.0]  # never acted: zeros
    policy.get_action(obs)
    held = policy.get_action(obs)
    assert toy.batches == [2, 2] and held[1].tolist() == [0.0, 0.0]
    last = held[2].tolist()
    policy.pause(torch.tensor([2]))
    policy.get_action(obs)
    assert policy.get_action(obs)[2].tolist() == last  # holds its last action
    assert toy.batches == [2, 2, 1]
    policy.reset([1, 2])
    assert policy.get_action(obs)[:, 0].tolist() == [10.0, 1.0, 2.0]
    assert toy.batches == [2, 2, 1, 2]


def test_resetting_every_env_by_id_is_a_full_reset() -> None:
    toy = ToyPolicy()
    policy = aa.load_policy("local", policy=toy, num_envs=3)
    policy.reset([2, 0, 1])
    policy.reset([1])
    assert toy.resets[0] is None and toy.resets[1].tolist() == [1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replay_steps_through_the_policy_do_not_synchronise_on_cuda() -> None:
    toy = ToyPolicy(horizon=16)
    policy = aa.load_policy("local", policy=toy, execute_steps=16)
    obs = observation(512, device="cuda")
    first = policy.get_action(obs)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(15):
            actions = policy.get_action(obs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert first.device.type == actions.device.type == "cuda"
    assert toy.batches == [512]
    assert actions[:, 0].tolist() == (torch.arange(512.0) + 150.0).tolist()
