"""DROID / LIBERO / ALOHA observation translation and action translation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_openpi.actions import OpenpiActions
from arena_adapters_openpi.examples import aloha_observation, libero_observation
from arena_adapters_openpi.observations import OpenpiObservations
from openpi_client import image_tools

from arena_adapters.errors import ActionError, ConfigError, ObservationError
from arena_adapters.examples import droid_observation
from arena_adapters.parts import Query


def make_query(num_envs: int, env_ids: list[int] | None = None, instruction: str = "") -> Query:
    ids = np.arange(num_envs, dtype=np.int64) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
    return Query(env_ids=torch.from_numpy(ids), env_ids_host=ids, device=torch.device("cpu"),
                 num_envs=num_envs, instructions=(instruction,) * len(ids))


def upstream_resized(images: torch.Tensor) -> np.ndarray:
    return image_tools.resize_with_pad(images.numpy(), 224, 224)


# ---------------------------------------------------------------------------------- DROID

def test_droid_request_has_upstream_keys_order_dtypes_and_values() -> None:
    obs = droid_observation(3)
    requests = OpenpiObservations().translate(obs, make_query(3, instruction="pick up the cup"))
    assert len(requests) == 3
    for env, request in enumerate(requests):
        assert list(request) == ["observation/exterior_image_1_left", "observation/wrist_image_left",
                                 "observation/joint_position", "observation/gripper_position", "prompt"]
        for key, camera in (("observation/exterior_image_1_left", "external_camera_rgb"),
                            ("observation/wrist_image_left", "wrist_camera_rgb")):
            image = request[key]
            assert image.dtype == np.uint8 and image.shape == (224, 224, 3) and image.flags.c_contiguous
            reference = upstream_resized(obs["camera_obs"][camera][env])
            assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1
        joints = request["observation/joint_position"]
        assert joints.dtype == np.float64 and joints.shape == (7,)
        np.testing.assert_array_equal(joints, obs["policy"]["joint_pos"][env].double().numpy())
        assert request["observation/gripper_position"].shape == (1,)
        assert request["prompt"] == "pick up the cup"


def test_only_queried_rows_are_sent_in_env_order() -> None:
    obs = droid_observation(6)
    requests = OpenpiObservations().translate(obs, make_query(6, [1, 4]))
    assert [r["observation/joint_position"][0] for r in requests] == [
        pytest.approx(float(obs["policy"]["joint_pos"][i, 0])) for i in (1, 4)]


@pytest.mark.parametrize(("height", "width"), [(180, 320), (480, 640), (100, 100), (224, 224), (300, 200), (7, 500)])
def test_resize_with_pad_matches_openpi_image_tools_but_for_a_few_values_within_one_level(height: int,
                                                                                        width: int) -> None:
    generator = torch.Generator().manual_seed(height * 1000 + width)
    noise = torch.randint(0, 256, (2, height, width, 3), generator=generator, dtype=torch.uint8)
    ramp = torch.arange(height * width * 3).reshape(1, height, width, 3).remainder(256).to(torch.uint8)
    images = torch.cat([noise, ramp])
    obs = {"camera_obs": {"external_camera_rgb": images, "wrist_camera_rgb": images},
           "policy": {"joint_pos": torch.zeros(3, 7), "gripper_pos": torch.zeros(3, 1)}}
    requests = OpenpiObservations().translate(obs, make_query(3))
    reference = upstream_resized(images)
    for env, request in enumerate(requests):
        difference = np.abs(request["observation/exterior_image_1_left"].astype(int) - reference[env].astype(int))
        assert difference.max() <= 1
        assert np.count_nonzero(difference) <= 0.02 * difference.size  # the float path: 8-25 %


def test_rgba_and_float_cameras_are_accepted() -> None:
    obs = droid_observation(2, height=224, width=224)
    rgb = obs["camera_obs"]["external_camera_rgb"]
    obs["camera_obs"]["external_camera_rgb"] = torch.cat([rgb, torch.full_like(rgb[..., :1], 255)], dim=-1)
    obs["camera_obs"]["wrist_camera_rgb"] = obs["camera_obs"]["wrist_camera_rgb"].float() / 255.0
    requests = OpenpiObservations().translate(obs, make_query(2))
    np.testing.assert_array_equal(requests[0]["observation/exterior_image_1_left"], rgb[0].numpy())
    wrist = requests[1]["observation/wrist_image_left"]
    assert wrist.dtype == np.uint8 and wrist.shape == (224, 224, 3)


def test_state_dtype_and_image_size_options() -> None:
    obs = droid_observation(1)
    request = OpenpiObservations(state_dtype="float32", image_size=0).translate(obs, make_query(1))[0]
    assert request["observation/joint_position"].dtype == np.float32
    assert request["observation/wrist_image_left"].shape == (180, 320, 3)


def test_paths_option_remaps_fields_as_map_or_text() -> None:
    obs = droid_observation(2)
    remapped = {"cams": {"front": obs["camera_obs"]["external_camera_rgb"]}, "q": obs["policy"]["joint_pos"],
                "g": obs["policy"]["gripper_pos"], "camera_obs": {"wrist_camera_rgb": obs["camera_obs"]["wrist_camera_rgb"]}}
    expected = OpenpiObservations().translate(obs, make_query(2))
    for paths in ({"exterior_image_1_left": "cams.front", "joint_position": "q", "gripper_position": "g"},
                  "exterior_image_1_left=cams.front, joint_position=q, gripper_position=g"):
        got = OpenpiObservations(paths=paths).translate(remapped, make_query(2))
        for a, b in zip(got, expected, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_bad_paths_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        OpenpiObservations(paths={"image": "x"})
    with pytest.raises(ConfigError, match="required"):
        OpenpiObservations(paths={"joint_position": ""})
    with pytest.raises(ConfigError, match="embodiment"):
        OpenpiObservations(embodiment="franka")
    with pytest.raises(ConfigError, match="state_dtype"):
        OpenpiObservations(state_dtype="int8")


def _replace(obs: dict[str, Any], group: str, key: str, value: Any) -> dict[str, Any]:
    return {**obs, group: {**obs[group], key: value}}


@pytest.mark.parametrize(("group", "key", "value", "expected"), [
    ("policy", "joint_pos", None, "policy.joint_pos"),
    ("policy", "joint_pos", torch.zeros(2, 6), "expected 7 values per env"),
    ("policy", "joint_pos", torch.zeros(2, 7, dtype=torch.int64), "float"),
    ("policy", "joint_pos", torch.zeros(3, 7), "num_envs=2"),
    ("policy", "joint_pos", np.zeros((2, 7)), "torch.Tensor"),
    ("policy", "gripper_pos", torch.zeros(2, 2), "expected 1 values per env"),
    ("camera_obs", "wrist_camera_rgb", torch.zeros(2, 64, 64, dtype=torch.uint8), "(num_envs, height, width, channels)"),
    ("camera_obs", "wrist_camera_rgb", torch.zeros(2, 64, 64, 1, dtype=torch.uint8), "3|4"),
    ("camera_obs", "wrist_camera_rgb", torch.zeros(2, 64, 64, 3, dtype=torch.int32), "uint8"),
    ("camera_obs", "external_camera_rgb", torch.zeros(3, 64, 64, 3, dtype=torch.uint8), "num_envs=2"),
])
def test_bad_observations_name_the_key_and_the_mismatch(group: str, key: str, value: Any, expected: str) -> None:
    obs = droid_observation(2)
    if value is None:
        obs = {**obs, group: {k: v for k, v in obs[group].items() if k != key}}
    else:
        obs = _replace(obs, group, key, value)
    with pytest.raises(ObservationError) as raised:
        OpenpiObservations().translate(obs, make_query(2))
    message = str(raised.value)
    assert f"{group}.{key}" in message and expected in message


# ---------------------------------------------------------------------------- LIBERO, ALOHA

def test_libero_request_layout() -> None:
    obs = libero_observation(2, seed=6)
    requests = OpenpiObservations(embodiment="libero").translate(obs, make_query(2, instruction="put the bowl"))
    request = requests[1]
    assert list(request) == ["observation/image", "observation/wrist_image", "observation/state", "prompt"]
    assert request["observation/image"].shape == (224, 224, 3)
    state = torch.cat([obs["policy"]["eef_pos"], obs["policy"]["eef_axis_angle"], obs["policy"]["gripper_pos"]], 1)
    np.testing.assert_array_equal(request["observation/state"], state[1].double().numpy())
    assert request["observation/state"].dtype == np.float64


def test_aloha_request_layout_with_chw_cameras() -> None:
    obs = aloha_observation(2, seed=7, height=120, width=160)
    requests = OpenpiObservations(embodiment="aloha").translate(obs, make_query(2, instruction="fold the towel"))
    request = requests[0]
    assert list(request) == ["state", "images", "prompt"]
    assert list(request["images"]) == ["cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"]
    high = request["images"]["cam_high"]
    assert high.shape == (3, 224, 224) and high.dtype == np.uint8 and high.flags.c_contiguous
    hwc = upstream_resized(obs["camera_obs"]["cam_high_rgb"][0])
    assert np.abs(high.transpose(1, 2, 0).astype(int) - hwc.astype(int)).max() <= 1
    assert request["state"].shape == (14,) and request["state"].dtype == np.float64


def test_aloha_optional_cameras_and_prompt_are_left_out_when_absent() -> None:
    obs = aloha_observation(1, seed=8, height=64, width=64, cameras=("cam_high",))
    request = OpenpiObservations(embodiment="aloha").translate(obs, make_query(1))[0]
    assert list(request) == ["state", "images"] and list(request["images"]) == ["cam_high"]
    with pytest.raises(ObservationError, match="cam_low"):
        OpenpiObservations(embodiment="aloha", paths={"cam_low": "camera_obs.cam_low_rgb"}).translate(
            obs, make_query(1))
    with pytest.raises(ObservationError, match="cam_high_rgb"):
        OpenpiObservations(embodiment="aloha").translate(aloha_observation(1, cameras=("cam_low",)), make_query(1))


# ---------------------------------------------------------------------------------- actions

@pytest.mark.parametrize("horizon", [10, 15, 50])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_actions_become_float32_chunks_of_the_reply_horizon(horizon: int, dtype: Any) -> None:
    replies = [{"actions": (np.arange(horizon * 8).reshape(horizon, 8) * 0.5 + env).astype(dtype),
                "server_timing": {"infer_ms": 1.0}} for env in range(3)]
    chunk = OpenpiActions().translate(replies, make_query(5, [0, 2, 4]))
    assert chunk.dtype == torch.float32 and chunk.shape == (3, horizon, 8)
    np.testing.assert_array_equal(chunk[2].numpy(), replies[2]["actions"].astype(np.float32))


def test_action_dim_slices_leading_columns() -> None:
    replies = [{"actions": np.arange(32, dtype=np.float32).reshape(4, 8)}]
    chunk = OpenpiActions(action_dim=7).translate(replies, make_query(1))
    assert chunk.shape == (1, 4, 7) and chunk[0, 1].tolist() == list(range(8, 15))
    with pytest.raises(ActionError, match="fewer than action_dim=9"):
        OpenpiActions(action_dim=9).translate(replies, make_query(1))


def test_a_single_reply_map_is_accepted_for_one_env() -> None:
    chunk = OpenpiActions().translate({"actions": np.ones((10, 8), np.float32)}, make_query(1))
    assert chunk.shape == (1, 10, 8)


@pytest.mark.parametrize(("replies", "expected"), [
    ([{"actions": np.ones((10, 8))}, {"actions": np.ones((15, 8))}], "disagree"),
    ([{"actions": np.ones((10, 8))}, {"actions": np.ones((10, 7))}], "disagree"),
    ([{"actions": np.ones((10, 8))}, {"action": np.ones((10, 8))}], "no 'actions' key"),
    ([{"actions": np.ones((10, 8))}, {"actions": np.ones(8)}], "(H, D)"),
    ([{"actions": np.ones((10, 8))}, {"actions": np.array([["a"] * 8] * 10)}], "numeric"),
    ([{"actions": np.ones((10, 8))}, {"actions": [[1.0] * 8] * 10}], "numeric"),
    ([{"actions": np.ones((10, 8))}, "oops"], "expected a map"),
    ([{"actions": np.ones((10, 8))}], "expected 2 replies"),
    ([{"actions": np.ones((10, 8))}, {"actions": np.ones((0, 8))}], "empty"),
])
def test_inconsistent_replies_are_clear_action_errors(replies: list[Any], expected: str) -> None:
    with pytest.raises(ActionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        OpenpiActions().translate(replies, make_query(2))


def test_prompt_is_left_out_without_an_instruction_so_the_server_default_applies() -> None:
    obs = droid_observation(2)
    query = Query(env_ids=torch.arange(2), env_ids_host=np.arange(2), device=torch.device("cpu"), num_envs=2,
                  instructions=("", "stack the cups"))
    first, second = OpenpiObservations().translate(obs, query)
    assert "prompt" not in first and second["prompt"] == "stack the cups"
