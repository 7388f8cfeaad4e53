"""``load_policy("openvla", ...)`` end to end against the reference server, with exact values."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_openvla.server import ReferenceServer

import arena_adapters as aa
from arena_adapters.errors import ConfigError, ObservationError, ServerError

MakeObservation = Callable[..., dict[str, Any]]
ServerFactory = Callable[..., ReferenceServer]


def _expected_openvla_actions(images: torch.Tensor, instruction: str, unnorm: bool) -> torch.Tensor:
    """The dummy rule applied to each env's image (as the server computes it, in float64)."""
    rows = []
    for image in images.numpy():
        means = image.mean(axis=(0, 1)) / 255
        rows.append([*means, image.shape[0], image.shape[1], len(instruction), 1.0 if unnorm else 0.0])
    return torch.tensor(np.array(rows, dtype=np.float64), dtype=torch.float32)


def test_openvla_policy_returns_the_servers_actions_for_every_env(
    openvla_server: ReferenceServer, make_observation: MakeObservation
) -> None:
    observation = make_observation(3)
    with aa.load_policy(
        "openvla", endpoint=openvla_server.endpoint, instruction="pick up the cup", unnorm_key="bridge_orig"
    ) as policy:
        actions = policy.get_action(observation)
        assert policy.stats.queries == 1 and policy.stats.env_requests == 3
        expected = _expected_openvla_actions(observation["camera_obs"]["external_camera_rgb"], "pick up the cup", True)
        assert actions.shape == (3, 7) and actions.dtype == torch.float32
        assert torch.equal(actions, expected)
        policy.get_action(observation)  # a chunk of one action: every step queries every env
        assert policy.stats.queries == 2 and policy.stats.env_requests == 6


def test_per_env_instructions_reach_the_server(
    openvla_server: ReferenceServer, make_observation: MakeObservation
) -> None:
    with aa.load_policy("openvla", endpoint=openvla_server.endpoint, instruction="abc") as policy:
        policy.get_action(make_observation(3))
        policy.set_instruction("a much longer instruction", env_ids=[1])
        actions = policy.get_action(make_observation(3))
    assert actions[:, 5].tolist() == [3.0, 25.0, 3.0]
    assert actions[:, 6].tolist() == [0.0, 0.0, 0.0]


def test_oft_policy_replays_the_chunk_and_requeries_after_it(
    oft_server: ReferenceServer, make_observation: MakeObservation
) -> None:
    observation = make_observation(2, height=32, width=32)
    with aa.load_policy(
        "openvla", variant="oft", endpoint=oft_server.endpoint, instruction="pick", resize="none", state_dim=8
    ) as policy:
        first = [policy.get_action(observation) for _ in range(8)]
        assert policy.stats.queries == 1
        policy.get_action(observation)
        assert policy.stats.queries == 2
    state = torch.cat([observation["policy"]["joint_pos"], observation["policy"]["gripper_pos"]], 1).double()
    for step, actions in enumerate(first):
        assert actions.shape == (2, 7)
        assert actions[:, 3:6].tolist() == [[32.0 + step, 32.0 + step, 4.0 + step]] * 2
        expected_last = (1.0 + state.sum(1) + step).float()
        assert torch.equal(actions[:, 6], expected_last)


def test_aloha_shaped_oft_chunks(start_server: ServerFactory, make_observation: MakeObservation) -> None:
    server = start_server(variant="oft", chunk_size=25, action_dim=14)
    observation = make_observation(2, height=16, width=16)
    observation["policy"]["joint_pos"] = torch.zeros(2, 14)
    with aa.load_policy(
        "openvla",
        variant="oft",
        endpoint=server.endpoint,
        resize="none",
        state_keys="policy.joint_pos",
        state_dim=14,
        wrist_cameras="left_wrist_image=camera_obs.wrist_camera_rgb,right_wrist_image=camera_obs.wrist_camera_rgb",
    ) as policy:
        actions = policy.get_action(observation)
        assert policy.scheduler is not None and policy.scheduler.horizon == 25
    assert actions.shape == (2, 14)
    assert actions[:, 6].tolist() == [2.0, 2.0]  # two wrist keys, zero state


def test_droid_env_layout_pads_the_7_dim_reply_to_8(
    openvla_server: ReferenceServer, make_observation: MakeObservation
) -> None:
    with aa.load_policy("openvla", endpoint=openvla_server.endpoint, action_dim=8) as policy:
        actions = policy.get_action(make_observation(2))
    assert actions.shape == (2, 8) and actions[:, 7].tolist() == [0.0, 0.0]


class InFlightBarrier:
    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)

    def __call__(self, payload: dict[str, Any]) -> np.ndarray:
        self.barrier.wait()
        return np.zeros(7)


def test_max_concurrency_overlaps_the_envs_requests(
    start_server: ServerFactory, make_observation: MakeObservation
) -> None:
    server = start_server(InFlightBarrier(3))
    with aa.load_policy("openvla", endpoint=server.endpoint, max_concurrency=3) as policy:
        policy.get_action(make_observation(3))
    assert server.stats.max_in_flight == 3


def test_by_default_the_envs_requests_are_in_flight_together(
    start_server: ServerFactory, make_observation: MakeObservation
) -> None:
    server = start_server(InFlightBarrier(4))
    with aa.load_policy("openvla", endpoint=server.endpoint) as policy:
        policy.get_action(make_observation(4, height=8, width=8))
    assert server.stats.max_in_flight == 4


def test_bad_observations_fail_before_anything_is_sent(
    openvla_server: ReferenceServer, make_observation: MakeObservation
) -> None:
    observation = make_observation(2)
    observation["camera_obs"]["external_camera_rgb"] = observation["camera_obs"]["external_camera_rgb"].float()
    sent = openvla_server.stats.requests
    with aa.load_policy("openvla", endpoint=openvla_server.endpoint) as policy:
        with pytest.raises(ObservationError, match="external_camera_rgb.*expected uint8"):
            policy.get_action(observation)
        del observation["camera_obs"]["external_camera_rgb"]
        with pytest.raises(ObservationError, match="missing"):
            policy.get_action(observation)
    assert openvla_server.stats.requests == sent


def test_wrong_variant_for_the_server_is_a_server_error(
    openvla_server: ReferenceServer, make_observation: MakeObservation
) -> None:
    with aa.load_policy("openvla", variant="oft", endpoint=openvla_server.endpoint) as policy, pytest.raises(
        ServerError
    ):
        policy.get_action(make_observation(1))


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        aa.load_policy("openvla", endpoint="http://127.0.0.1:9", variant_typo="oft")
    with pytest.raises(ConfigError, match="variant"):
        aa.load_policy("openvla", variant="pi0")
