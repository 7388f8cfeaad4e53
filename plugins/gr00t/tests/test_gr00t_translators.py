"""DROID and config-driven translators: wire layout, resizing, errors, discovery, action layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_gr00t.droid import droid_actions, droid_observations
from arena_adapters_gr00t.embodiment import load_spec
from arena_adapters_gr00t.modality import ModalityConfig
from arena_adapters_gr00t.reference_policy import droid_modality_configs
from arena_adapters_gr00t.translators import Gr00tActions, Gr00tObservations

from arena_adapters.errors import ActionError, ConfigError, ObservationError
from arena_adapters.imaging import resize_with_pad
from arena_adapters.parts import Query

DROID_KEYS = ["video.exterior_image_1_left", "video.wrist_image_left", "state.joint_position",
              "state.gripper_position", "annotation.language.language_instruction"]


def query_for(env_ids: list[int], num_envs: int, text: str = "pick up the cup") -> Query:
    ids = np.array(env_ids, dtype=np.int64)
    return Query(torch.from_numpy(ids), ids, torch.device("cpu"), num_envs, (text,) * len(ids))


class FakeTransport:
    """Stands in for a transport in on_connect: only metadata() is read."""

    def __init__(self, configs: dict[str, Any], protocol_version: str = "n1.6") -> None:
        self.configs = configs
        self.protocol_version = protocol_version

    def metadata(self) -> dict[str, Any]:
        return self.configs


def test_droid_flat_request_layout(droid_observation: Callable[..., dict[str, Any]]) -> None:
    observation = droid_observation(5, height=90, width=120)
    request = droid_observations().translate(observation, query_for([1, 3, 4], 5))
    assert list(request) == DROID_KEYS
    exterior = request["video.exterior_image_1_left"]
    assert exterior.dtype == np.uint8 and exterior.shape == (3, 1, 180, 320, 3)
    expected = resize_with_pad(observation["camera_obs"]["external_camera_rgb"][[1, 3, 4]], 180, 320)
    np.testing.assert_array_equal(exterior[:, 0], expected.numpy())
    joints = request["state.joint_position"]
    assert joints.dtype == np.float32 and joints.shape == (3, 1, 7)
    np.testing.assert_array_equal(joints[:, 0], observation["policy"]["joint_pos"][[1, 3, 4]].numpy())
    assert request["state.gripper_position"].shape == (3, 1, 1)
    assert request["annotation.language.language_instruction"] == ["pick up the cup"] * 3


def test_droid_nested_request_layout(droid_observation: Callable[..., dict[str, Any]]) -> None:
    request = droid_observations(format="nested").translate(droid_observation(2), query_for([0, 1], 2, "go"))
    assert list(request) == ["video", "state", "language"]
    assert list(request["video"]) == ["exterior_image_1_left", "wrist_image_left"]
    assert list(request["state"]) == ["joint_position", "gripper_position"]
    assert request["language"] == {"annotation.language.language_instruction": [["go"], ["go"]]}


def test_images_already_at_wire_size_are_sent_as_they_are(droid_observation: Callable[..., dict[str, Any]]) -> None:
    observation = droid_observation(2, height=180, width=320)
    request = droid_observations().translate(observation, query_for([0, 1], 2))
    np.testing.assert_array_equal(request["video.wrist_image_left"][:, 0],
                                  observation["camera_obs"]["wrist_camera_rgb"].numpy())


def test_rgba_cameras_drop_alpha(droid_observation: Callable[..., dict[str, Any]]) -> None:
    observation = droid_observation(2, height=180, width=320)
    rgb = observation["camera_obs"]["wrist_camera_rgb"]
    observation["camera_obs"]["wrist_camera_rgb"] = torch.cat([rgb, torch.full_like(rgb[..., :1], 255)], -1)
    request = droid_observations().translate(observation, query_for([0, 1], 2))
    np.testing.assert_array_equal(request["video.wrist_image_left"][:, 0], rgb.numpy())


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda o: o["camera_obs"].pop("wrist_camera_rgb"), r"'camera_obs.wrist_camera_rgb' is missing"),
    (lambda o: o["camera_obs"].__setitem__("wrist_camera_rgb", o["camera_obs"]["wrist_camera_rgb"].float()),
     r"'camera_obs.wrist_camera_rgb': expected uint8 .*got float32 \(4, 48, 64, 3\)"),
    (lambda o: o["camera_obs"].__setitem__("external_camera_rgb", torch.zeros(4, 48, 64, dtype=torch.uint8)),
     r"'camera_obs.external_camera_rgb': expected uint8 \(num_envs, height, width, 3\), got uint8 \(4, 48, 64\)"),
    (lambda o: o["camera_obs"].__setitem__("external_camera_rgb", torch.zeros(4, 48, 64, 2, dtype=torch.uint8)),
     r"'camera_obs.external_camera_rgb'.*got uint8 \(4, 48, 64, 2\)"),
    (lambda o: o["policy"].__setitem__("joint_pos", torch.zeros(3, 7)),
     r"'policy.joint_pos': expected num_envs=4 rows first, got float32 \(3, 7\)"),
    (lambda o: o["policy"].__setitem__("joint_pos", torch.zeros(4, 7, dtype=torch.int64)),
     r"'policy.joint_pos': expected float32/.*got int64 \(4, 7\)"),
    (lambda o: o["policy"].__setitem__("gripper_pos", np.zeros((4, 1))), r"'policy.gripper_pos': expected a torch.Tensor"),
])
def test_bad_observations_name_key_shape_and_dtype(mutate: Callable[[dict[str, Any]], Any], message: str,
                                                   droid_observation: Callable[..., dict[str, Any]]) -> None:
    observation = droid_observation(4)
    mutate(observation)
    with pytest.raises(ObservationError, match=message):
        droid_observations().translate(observation, query_for([0, 2], 4))


def test_droid_actions_concatenate_on_the_env_device() -> None:
    joints = np.arange(2 * 32 * 7, dtype=np.float32).reshape(2, 32, 7)
    gripper = np.linspace(0, 1, 2 * 32, dtype=np.float32).reshape(2, 32, 1)
    reply = {"action.joint_position": joints, "action.gripper_position": gripper}
    chunk = droid_actions().translate(reply, query_for([0, 1], 2))
    assert chunk.dtype == torch.float32 and chunk.shape == (2, 32, 8) and chunk.device.type == "cpu"
    np.testing.assert_array_equal(chunk.numpy(), np.concatenate([joints, gripper], -1))
    binarized = droid_actions(gripper_threshold=0.5).translate(reply, query_for([0, 1], 2))
    np.testing.assert_array_equal(binarized[..., 7].numpy(), (gripper[..., 0] > 0.5).astype(np.float32))
    np.testing.assert_array_equal(binarized[..., :7].numpy(), joints)


@pytest.mark.parametrize(("reply", "message"), [
    ({"action.joint_position": np.zeros((2, 32, 7), np.float32)}, "lacks action key 'action.gripper_position'"),
    ({"action.joint_position": np.zeros((1, 32, 7), np.float32),
      "action.gripper_position": np.zeros((1, 32, 1), np.float32)}, r"expected \(B=2"),
    ({"action.joint_position": np.zeros((2, 32, 6), np.float32),
      "action.gripper_position": np.zeros((2, 32, 1), np.float32)}, r"D=7\), got float32 \(2, 32, 6\)"),
    ({"action.joint_position": np.zeros((2, 32, 7), np.float32),
      "action.gripper_position": np.zeros((2, 16, 1), np.float32)}, "disagree on the horizon"),
    ({"joint_position": np.zeros((2, 32, 7), np.float32)}, "lacks action key"),
    ([1, 2], "must be an action map"),
])
def test_bad_replies_raise_action_errors(reply: Any, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        droid_actions().translate(reply, query_for([0, 1], 2))


def test_action_horizon_is_checked_after_discovery() -> None:
    actions = droid_actions()
    actions.on_connect(FakeTransport(droid_modality_configs(action_horizon=16)))
    reply = {"action.joint_position": np.zeros((1, 32, 7), np.float32),
             "action.gripper_position": np.zeros((1, 32, 1), np.float32)}
    with pytest.raises(ActionError, match="H=16"):
        actions.translate(reply, query_for([0], 1))


def test_droid_translator_refuses_a_server_of_another_embodiment() -> None:
    configs = droid_modality_configs()
    configs["video"] = ModalityConfig((0,), ("ego_view",))
    with pytest.raises(ConfigError, match=r"requires video keys \['ego_view'\]"):
        droid_observations().on_connect(FakeTransport(configs))


def test_nested_format_refused_for_n15_servers() -> None:
    with pytest.raises(ConfigError, match="N1.5"):
        droid_observations(format="nested").on_connect(FakeTransport({}, protocol_version="n1.5"))


GR1_YAML = """
format: nested
image_size: [64, 64]
cameras: [camera_obs.robot_pov_cam_rgb]
state:
  left_arm: {path: policy.robot_joint_pos, joints: [l1, l2, l3]}
  right_arm: {path: policy.robot_joint_pos, indices: [3, 4]}
state_joint_names:
  policy.robot_joint_pos: {l1: 0, l2: 1, l3: 2, r1: 3, r2: 4, head: 5}
action:
  right_arm: {joints: [r1, r2]}
  left_arm: {joints: [l1, l2, l3]}
  gripper: {dim: 1, indices: [6], binarize: 0.0}
action_joint_names: {l1: 0, l2: 1, l3: 2, r1: 3, r2: 4, head: 5, grip: 6}
"""


def gr1_server_configs() -> dict[str, ModalityConfig]:
    return {
        "video": ModalityConfig((0,), ("ego_view",)),
        "state": ModalityConfig((0,), ("left_arm", "right_arm")),
        "action": ModalityConfig(tuple(range(16)), ("right_arm", "left_arm", "gripper")),
        "language": ModalityConfig((0,), ("annotation.human.task_description",)),
    }


def test_generic_yaml_config_with_discovery(tmp_yaml: Callable[[str], Path]) -> None:
    path = tmp_yaml(GR1_YAML)
    observations, actions = Gr00tObservations(str(path)), Gr00tActions(str(path))
    transport = FakeTransport(gr1_server_configs())
    observations.on_connect(transport)
    actions.on_connect(transport)
    joints = torch.arange(3 * 6, dtype=torch.float64).reshape(3, 6)
    observation = {"camera_obs": {"robot_pov_cam_rgb": torch.zeros(3, 32, 48, 3, dtype=torch.uint8)},
                   "policy": {"robot_joint_pos": joints}}
    request = observations.translate(observation, query_for([0, 2], 3, "reach"))
    assert list(request["video"]) == ["ego_view"]  # camera name discovered from the server
    assert request["video"]["ego_view"].shape == (2, 1, 64, 64, 3)
    np.testing.assert_array_equal(request["state"]["left_arm"][:, 0], joints[[0, 2]][:, :3].numpy())
    np.testing.assert_array_equal(request["state"]["right_arm"][:, 0], joints[[0, 2]][:, 3:5].numpy())
    assert request["state"]["left_arm"].dtype == np.float32
    assert request["language"] == {"annotation.human.task_description": [["reach"], ["reach"]]}
    reply = {"right_arm": np.full((2, 16, 2), 2.0, np.float32), "left_arm": np.full((2, 16, 3), 1.0, np.float32),
             "gripper": np.array([-1.0, 1.0], np.float32).reshape(2, 1, 1).repeat(16, 1)}
    chunk = actions.translate(reply, query_for([0, 2], 3))
    assert chunk.shape == (2, 16, 7)
    np.testing.assert_array_equal(chunk[0, 0].numpy(), [1, 1, 1, 2, 2, 0, 0])
    np.testing.assert_array_equal(chunk[1, 0].numpy(), [1, 1, 1, 2, 2, 0, 1])


def test_generic_config_leaves_actions_and_language_to_the_server() -> None:
    config = {"cameras": {"ego_view": "cam"}, "state": {"left_arm": "q", "right_arm": "q"}}
    observations, actions = Gr00tObservations(config), Gr00tActions(config, format="flat")
    transport = FakeTransport(gr1_server_configs())
    observations.on_connect(transport)
    actions.on_connect(transport)
    assert observations.resolved.language_key == "annotation.human.task_description"
    assert actions.resolved.action_horizon == 16
    reply = {"action.right_arm": np.ones((1, 16, 2), np.float32), "action.left_arm": np.zeros((1, 16, 3), np.float32),
             "action.gripper": np.ones((1, 16, 1), np.float32)}
    chunk = actions.translate(reply, query_for([0], 1))
    np.testing.assert_array_equal(chunk[0, 0].numpy(), [1, 1, 0, 0, 0, 1])


def test_generic_horizons_above_one_repeat_the_current_frame() -> None:
    config = {"cameras": {"cam": "cam"}, "state": {"q": "q"}, "language_key": "task", "horizons": {"video": 2, "state": 3}}
    observation = {"cam": torch.ones(2, 4, 4, 3, dtype=torch.uint8), "q": torch.arange(4.0).reshape(2, 2)}
    request = Gr00tObservations(config, format="flat").translate(observation, query_for([1], 2))
    assert request["video.cam"].shape == (1, 2, 4, 4, 3)
    np.testing.assert_array_equal(request["state.q"], [[[2, 3], [2, 3], [2, 3]]])
    assert request["task"] == ["pick up the cup"]


@pytest.mark.parametrize(("config", "message"), [
    ({"cameras": {"cam": "cam"}, "bogus": 1}, r"unknown field\(s\) \['bogus'\]"),
    ({"format": "sideways"}, "'format'"),
    ({"state": {"q": {"path": "q", "joints": ["a"]}}}, "needs state_joint_names"),
    ({"state": {"q": {"path": "q", "joints": ["z"]}}, "state_joint_names": {"q": ["a"]}}, r"unknown joints \['z'\]"),
    ({"image_size": [10]}, "image_size"),
    ({"action": {"a": {"dim": 2, "indices": [0]}}}, "dim 2 != 1 indices"),
    ({"horizons": {"video": 0}}, "horizons.video"),
])
def test_generic_config_errors_name_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_spec(config)


def test_generic_config_without_names_needs_the_server() -> None:
    observations = Gr00tObservations({"cameras": ["cam"], "language_key": "task"})
    with pytest.raises(ConfigError, match="no wire names"):
        observations.resolved  # noqa: B018 - resolving is the point
    with pytest.raises(ConfigError, match="language key"):
        Gr00tObservations({"cameras": {"c": "cam"}}).resolved  # noqa: B018


def test_arena_joint_space_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "8dof.yaml").write_text("joints:\n  panda_joint1: 0\n  panda_joint2: 1\n  finger_joint: 7\n")
    spec = load_spec({"state": {"arm": {"path": "q", "joints": ["panda_joint2", "finger_joint"]}},
                      "state_joint_names": {"q": str(tmp_path / "8dof.yaml")}})
    assert spec.states[0].indices == (1, 7)
