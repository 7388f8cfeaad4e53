"""``load_policy("gr00t")`` end to end against the reference server on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_gr00t.server import ReferenceServer

import arena_adapters as aa
from arena_adapters.errors import ObservationError, ServerError
from arena_adapters.records import AdapterRecord

Start = Callable[..., ReferenceServer]


def test_the_plugin_is_found_by_entry_point() -> None:
    registry = aa.PluginRegistry()
    assert "gr00t" in registry.available_adapters()
    adapter = registry.adapter("gr00t")
    assert isinstance(adapter, AdapterRecord)
    assert adapter.defaults["execute_steps"] == 8
    assert (adapter.transport, adapter.observation_translator) == ("gr00t.zmq", "gr00t.droid")


@pytest.mark.parametrize("num_envs", [1, 16])
def test_droid_end_to_end_values(num_envs: int, server: ReferenceServer,
                                 droid_observation: Callable[..., dict[str, Any]],
                                 expected_actions: Callable[..., np.ndarray]) -> None:
    observation = droid_observation(num_envs)
    state = torch.cat([observation["policy"]["joint_pos"], observation["policy"]["gripper_pos"]], -1).numpy()
    chunk = expected_actions(state)
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, instruction="pick up the cup") as policy:
        for step in range(10):
            actions = policy.get_action(observation)
            assert actions.shape == (num_envs, 8) and actions.dtype == torch.float32
            np.testing.assert_array_equal(actions.numpy(), chunk[:, step % 8])
        assert policy.stats.queries == 2  # 8 steps per chunk; one batched request for all envs each time
        assert policy.stats.env_requests == 2 * num_envs
    assert server.requests_served == 1 + 2  # get_modality_config, then two get_action


def test_only_due_envs_are_queried_in_one_batch(server: ReferenceServer,
                                                droid_observation: Callable[..., dict[str, Any]],
                                                expected_actions: Callable[..., np.ndarray]) -> None:
    observation = droid_observation(6)
    requests: list[int] = []
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        transport = policy.transport
        original = transport.infer

        def counting(request: dict[str, Any], deadline: Any = None) -> dict[str, Any]:
            requests.append(len(request["annotation.language.language_instruction"]))
            return original(request, deadline)

        transport.infer = counting  # type: ignore[method-assign]
        policy.get_action(observation)
        policy.get_action(observation)
        policy.reset([1, 4])  # partial reset: no server reset, those envs are due
        observation["policy"]["joint_pos"][[1, 4]] += 100.0
        actions = policy.get_action(observation)
    assert requests == [6, 2]
    state = torch.cat([observation["policy"]["joint_pos"], observation["policy"]["gripper_pos"]], -1).numpy()
    np.testing.assert_array_equal(actions[[1, 4]].numpy(), expected_actions(state[[1, 4]])[:, 0])
    np.testing.assert_array_equal(actions[[0, 2]].numpy(), expected_actions(state[[0, 2]])[:, 2])  # third step
    assert server.policy.policy.resets == 0


def test_full_reset_resets_the_server_policy(server: ReferenceServer,
                                             droid_observation: Callable[..., dict[str, Any]]) -> None:
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        policy.get_action(droid_observation(2))
        policy.reset()
        assert server.policy.policy.resets == 1
        policy.reset(torch.tensor([0]))  # a partial reset cannot reach a server-wide reset
        assert server.policy.policy.resets == 1
        policy.reset(torch.tensor([1, 0]))  # every env, by id: a full reset
        assert server.policy.policy.resets == 2


def test_nested_server_and_translators(start_server: Start, droid_observation: Callable[..., dict[str, Any]],
                                       expected_actions: Callable[..., np.ndarray]) -> None:
    server = start_server(format="nested")
    observation = droid_observation(3)
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, format="nested", execute_steps=4) as policy:
        actions = policy.get_action(observation)
    state = torch.cat([observation["policy"]["joint_pos"], observation["policy"]["gripper_pos"]], -1).numpy()
    np.testing.assert_array_equal(actions.numpy(), expected_actions(state)[:, 0])


def test_format_mismatch_is_a_server_error(server: ReferenceServer,
                                           droid_observation: Callable[..., dict[str, Any]]) -> None:
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, format="nested") as policy, \
            pytest.raises(ServerError, match="must be in observation"):
        policy.get_action(droid_observation(1))


def test_bad_observation_is_refused_before_sending(server: ReferenceServer,
                                                   droid_observation: Callable[..., dict[str, Any]]) -> None:
    observation = droid_observation(2)
    observation["camera_obs"]["external_camera_rgb"] = observation["camera_obs"]["external_camera_rgb"].float()
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        with pytest.raises(ObservationError, match="external_camera_rgb.*uint8.*float32"):
            policy.get_action(observation)
        assert server.requests_served == 1  # only get_modality_config went out


def test_api_token_and_options_through_load_policy(start_server: Start,
                                                   droid_observation: Callable[..., dict[str, Any]]) -> None:
    server = start_server(api_token="s3cret")
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, api_token="s3cret",
                        gripper_threshold=0.5) as policy:
        actions = policy.get_action(droid_observation(4))
    assert set(np.unique(actions[:, 7].numpy())) <= {0.0, 1.0}
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy, \
            pytest.raises(ServerError, match="Unauthorized"):
        policy.get_action(droid_observation(1))


def test_generic_translators_through_load_policy(start_server: Start) -> None:
    server = start_server(format="nested")
    config = {
        "cameras": ["camera_obs.external_camera_rgb", "camera_obs.wrist_camera_rgb"],
        "state": {"joint_position": {"path": "policy.q", "indices": [0, 1, 2, 3, 4, 5, 6]},
                  "gripper_position": {"path": "policy.q", "indices": [7]}},
        "image_size": "180x320",
    }
    q = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8)
    observation = {"camera_obs": {"external_camera_rgb": torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
                                  "wrist_camera_rgb": torch.zeros(2, 32, 32, 3, dtype=torch.uint8)},
                   "policy": {"q": q}}
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, observation_translator="gr00t.generic",
                        action_translator="gr00t.generic", config=config) as policy:
        actions = policy.get_action(observation)
    np.testing.assert_array_equal(actions.numpy(), q.numpy())
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, embodiment=config) as policy:
        np.testing.assert_array_equal(policy.get_action(observation).numpy(), q.numpy())


def test_plain_callable_policy_served(start_server: Start, droid_observation: Callable[..., dict[str, Any]]) -> None:
    seen: list[list[str]] = []

    def fn(observation: dict[str, Any]) -> dict[str, np.ndarray]:
        seen.append(list(observation))
        batch = observation["state.joint_position"].shape[0]
        return {"action.joint_position": np.ones((batch, 10, 7), np.float32),
                "action.gripper_position": np.zeros((batch, 10, 1), np.float32)}

    server = start_server(fn)
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        actions = policy.get_action(droid_observation(3))
    assert seen[0][0] == "video.exterior_image_1_left"
    np.testing.assert_array_equal(actions.numpy(), np.repeat([[1.0] * 7 + [0.0]], 3, axis=0))


def test_prefetch_over_zeromq_gives_the_actions_of_each_step(
    server: ReferenceServer, droid_observation: Callable[..., dict[str, Any]]
) -> None:
    """joint_pos = 0.01 * clock makes the test policy's action for any step 0.01 * clock of that
    step, whichever step the chunk was asked at: prefetched chunks must skip the elapsed actions."""
    observation = droid_observation(4)
    clock = torch.tensor([0.0, 3.0, 5.0, 9.0])
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, execute_steps=8, prefetch_steps=3) as policy:
        for _ in range(30):
            observation["policy"]["joint_pos"][:] = 0.01 * clock.view(-1, 1)
            actions = policy.get_action(observation)
            np.testing.assert_allclose(actions[:, :7].numpy(), 0.01 * clock.view(-1, 1).expand(4, 7).numpy(), atol=1e-5)
            clock += 1
        assert policy.stats.queries > 1


@pytest.mark.parametrize(("image_size", "resets"), [(None, False), (None, True), ((8, 12), True)],
                         ids=["all envs", "subsets", "subsets resized"])
def test_a_request_ahead_sends_the_images_of_its_step_though_the_env_draws_in_place(
    start_server: Start, droid_observation: Callable[..., dict[str, Any]], image_size: tuple[int, int] | None,
    resets: bool,
) -> None:
    """Every pixel of env e's images is its step counter since its reset, drawn into the same
    buffers every step (as camera sensors do), and the server plans from the pixels. Requests ahead
    of time are answered while the env steps on; the actions match the clock only if each request
    carried the pixels of the step it was made at (all envs at once: views of the env's buffers,
    copied; a subset: rows gathered; resized or not)."""
    def stamped(observation: dict[str, Any]) -> dict[str, np.ndarray]:
        stamp = observation["video.exterior_image_1_left"][:, -1, 0, 0, 0].astype(np.float32)
        assert (observation["video.wrist_image_left"][:, -1, 0, 0, 0] == stamp).all()
        steps = stamp[:, None, None] + np.arange(32, dtype=np.float32)[None, :, None]
        return {"action.joint_position": np.repeat(steps, 7, axis=2) / 100,
                "action.gripper_position": np.zeros((len(stamp), 32, 1), np.float32)}

    server = start_server(stamped)
    num_envs = 5
    observation = droid_observation(num_envs, height=16, width=24)
    cameras = observation["camera_obs"]
    clock = torch.zeros(num_envs)
    rng = np.random.default_rng(0)
    length = rng.integers(6, 30, num_envs) if resets else np.full(num_envs, 1000)  # 1000: one phase
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, execute_steps=8, prefetch_steps=4,
                        image_size=image_size) as policy:
        transport = policy.transport
        send = transport.infer

        def queued(request: dict[str, Any], deadline: Any = None) -> dict[str, Any]:
            time.sleep(0.02)  # as if behind another request: the env draws its next frames meanwhile
            return send(request, deadline)

        transport.infer = queued  # type: ignore[method-assign]
        for _ in range(60):
            for images in cameras.values():
                images[:] = clock.to(torch.uint8).view(-1, 1, 1, 1)
            actions = policy.get_action(observation)
            np.testing.assert_allclose(actions[:, 0].numpy(), clock.numpy() / 100, atol=1e-6)
            clock += 1
            done = np.flatnonzero(clock.numpy() >= length)
            if len(done):
                clock[done] = 0
                length[done] = rng.integers(6, 30, len(done))
                policy.reset(done)
        assert policy.scheduler is not None and policy.scheduler.requests_per_env.min() >= 5
