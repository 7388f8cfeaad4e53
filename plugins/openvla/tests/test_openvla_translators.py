"""Observation and action translators of both variants: payload layout, checks before sending, chunks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_openvla.actions import OpenVlaActions
from arena_adapters_openvla.observations import (
    OftObservations,
    OpenVlaObservations,
    make_observation_translator,
    parse_wrist_cameras,
)

from arena_adapters.errors import ActionError, ConfigError, ObservationError
from arena_adapters.imaging import resize_with_pad
from arena_adapters.parts import Query

MakeObservation = Callable[..., dict[str, Any]]


def _query(env_ids: list[int], num_envs: int, instructions: tuple[str, ...] | None = None) -> Query:
    ids = np.array(env_ids, dtype=np.int64)
    texts = instructions if instructions is not None else tuple(f"task {i}" for i in env_ids)
    return Query(torch.from_numpy(ids), ids, torch.device("cpu"), num_envs, texts)


# ------------------------------------------------------------------------------------ OpenVLA


def test_openvla_payloads_hold_image_instruction_and_unnorm_key_in_upstream_order(
    make_observation: MakeObservation,
) -> None:
    observation = make_observation(3)
    payloads = OpenVlaObservations(unnorm_key="bridge_orig").translate(observation, _query([0, 1, 2], 3))
    assert [list(payload) for payload in payloads] == [["image", "instruction", "unnorm_key"]] * 3
    assert [payload["instruction"] for payload in payloads] == ["task 0", "task 1", "task 2"]
    camera = observation["camera_obs"]["external_camera_rgb"].numpy()
    for index, payload in enumerate(payloads):
        assert payload["image"].dtype == np.uint8 and payload["image"].flags.c_contiguous
        assert np.array_equal(payload["image"], camera[index])


def test_openvla_payload_leaves_out_unnorm_key_when_unset(make_observation: MakeObservation) -> None:
    (payload,) = OpenVlaObservations().translate(make_observation(1), _query([0], 1))
    assert list(payload) == ["image", "instruction"]


def test_partial_queries_send_only_those_envs_rows(make_observation: MakeObservation) -> None:
    observation = make_observation(4)
    payloads = OpenVlaObservations().translate(observation, _query([1, 3], 4))
    camera = observation["camera_obs"]["external_camera_rgb"].numpy()
    assert np.array_equal(payloads[0]["image"], camera[1]) and np.array_equal(payloads[1]["image"], camera[3])
    assert [payload["instruction"] for payload in payloads] == ["task 1", "task 3"]


def test_images_are_resized_with_padding_on_the_device(make_observation: MakeObservation) -> None:
    observation = make_observation(2, height=180, width=320)
    payloads = OpenVlaObservations().translate(observation, _query([0, 1], 2))
    expected = resize_with_pad(observation["camera_obs"]["external_camera_rgb"], 224, 224).numpy()
    assert payloads[0]["image"].shape == (224, 224, 3)
    assert np.array_equal(payloads[1]["image"], expected[1])
    assert not payloads[0]["image"][0].any()  # the padding rows are black


@pytest.mark.parametrize("resize, shape", [("none", (180, 320, 3)), ("256x256", (256, 256, 3)), ("64", (64, 64, 3))])
def test_resize_option(make_observation: MakeObservation, resize: str, shape: tuple[int, ...]) -> None:
    (payload,) = OpenVlaObservations(resize=resize).translate(make_observation(1, 180, 320), _query([0], 1))
    assert payload["image"].shape == shape


def test_missing_instructions_are_sent_empty(make_observation: MakeObservation) -> None:
    payloads = OpenVlaObservations().translate(make_observation(2), _query([0, 1], 2, instructions=()))
    assert [payload["instruction"] for payload in payloads] == ["", ""]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda obs: obs["camera_obs"].pop("external_camera_rgb"), r"'camera_obs.external_camera_rgb' is missing"),
        (
            lambda obs: obs["camera_obs"].update(external_camera_rgb=obs["camera_obs"]["external_camera_rgb"].float()),
            r"'camera_obs.external_camera_rgb': expected uint8 \(num_envs, H, W, 3\), got float32 \(2, 224, 224, 3\)",
        ),
        (
            lambda obs: obs["camera_obs"].update(external_camera_rgb=torch.zeros(2, 224, 224, 4, dtype=torch.uint8)),
            r"expected uint8 \(num_envs, H, W, 3\), got uint8 \(2, 224, 224, 4\)",
        ),
        (
            lambda obs: obs["camera_obs"].update(external_camera_rgb=torch.zeros(3, 224, 224, 3, dtype=torch.uint8)),
            r"expected num_envs=2 rows first, got uint8 \(3, 224, 224, 3\)",
        ),
        (
            lambda obs: obs["camera_obs"].update(external_camera_rgb=np.zeros((2, 224, 224, 3), np.uint8)),
            r"expected a torch.Tensor uint8",
        ),
    ],
)
def test_bad_camera_observations_name_key_expected_and_actual(
    make_observation: MakeObservation, mutate: Callable[[dict[str, Any]], Any], match: str
) -> None:
    observation = make_observation(2)
    mutate(observation)
    with pytest.raises(ObservationError, match=match):
        OpenVlaObservations().translate(observation, _query([0, 1], 2))


def test_image_key_option_reads_another_camera(make_observation: MakeObservation) -> None:
    observation = make_observation(1)
    translator = make_observation_translator(image_key="camera_obs.wrist_camera_rgb")
    (payload,) = translator.translate(observation, _query([0], 1))
    assert np.array_equal(payload["image"], observation["camera_obs"]["wrist_camera_rgb"][0].numpy())


# ---------------------------------------------------------------------------------------- OFT


def test_oft_payloads_follow_upstream_key_order_with_float64_state(make_observation: MakeObservation) -> None:
    observation = make_observation(2)
    payloads = make_observation_translator(variant="oft", state_dim=8).translate(observation, _query([0, 1], 2))
    assert [list(payload) for payload in payloads] == [["full_image", "wrist_image", "state", "instruction"]] * 2
    expected_state = torch.cat([observation["policy"]["joint_pos"], observation["policy"]["gripper_pos"]], 1)
    for index, payload in enumerate(payloads):
        assert payload["state"].dtype == np.float64 and payload["state"].shape == (8,)
        assert np.array_equal(payload["state"], expected_state[index].double().numpy())
        assert np.array_equal(payload["wrist_image"], observation["camera_obs"]["wrist_camera_rgb"][index].numpy())
        assert np.array_equal(payload["full_image"], observation["camera_obs"]["external_camera_rgb"][index].numpy())


def test_oft_wrist_cameras_keep_the_configured_order(make_observation: MakeObservation) -> None:
    observation = make_observation(1)
    translator = OftObservations(
        wrist_cameras="right_wrist_image=camera_obs.external_camera_rgb,left_wrist_image=camera_obs.wrist_camera_rgb",
        state_keys="policy.joint_pos",
    )
    (payload,) = translator.translate(observation, _query([0], 1))
    assert list(payload) == ["full_image", "right_wrist_image", "left_wrist_image", "state", "instruction"]
    assert np.array_equal(payload["left_wrist_image"], observation["camera_obs"]["wrist_camera_rgb"][0].numpy())
    assert payload["state"].shape == (7,)


def test_oft_without_wrist_cameras_or_state(make_observation: MakeObservation) -> None:
    translator = OftObservations(wrist_cameras="", state_keys="")
    (payload,) = translator.translate(make_observation(1), _query([0], 1))
    assert list(payload) == ["full_image", "instruction"]


def test_oft_state_width_is_checked_before_sending(make_observation: MakeObservation) -> None:
    translator = OftObservations(state_dim=14)
    with pytest.raises(ObservationError, match=r"expected 14 values per env .* got 8 \(policy.joint_pos 7, policy"):
        translator.translate(make_observation(1), _query([0], 1))


def test_oft_state_must_be_float(make_observation: MakeObservation) -> None:
    observation = make_observation(1)
    observation["policy"]["gripper_pos"] = torch.ones(1, 1, dtype=torch.int64)
    with pytest.raises(ObservationError, match=r"'policy.gripper_pos': expected float16/bfloat16/float32/float64"):
        OftObservations().translate(observation, _query([0], 1))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("camera_obs.wrist_camera_rgb", (("wrist_camera_rgb", "camera_obs.wrist_camera_rgb"),)),
        (["a=x.y", "b_wrist=z"], None),
        ({"left_wrist_image": "a.b", "right_wrist_image": "c.d"},
         (("left_wrist_image", "a.b"), ("right_wrist_image", "c.d"))),
        ("", ()),
    ],
)
def test_wrist_camera_option_forms(value: Any, expected: Any) -> None:
    if expected is None:
        with pytest.raises(ConfigError, match="containing 'wrist'"):
            parse_wrist_cameras(value)
    else:
        assert parse_wrist_cameras(value) == expected


@pytest.mark.parametrize(
    "options, match",
    [
        ({"variant": "pi0"}, "variant"),
        ({"variant": "oft", "unnorm_key": "bridge_orig"}, "unnorm_key"),
        ({"resize": "big"}, "resize"),
        ({"variant": "oft", "wrist_cameras": "wrist_image=a,wrist_image=b"}, "duplicate"),
        ({"variant": "oft", "state_dim": 0}, "state_dim"),
    ],
)
def test_bad_translator_options_are_config_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_observation_translator(**options)


# ------------------------------------------------------------------------------------ actions


def test_bare_openvla_actions_become_chunks_of_one() -> None:
    replies = [np.arange(7, dtype=np.float64) + i for i in range(3)]
    chunk = OpenVlaActions().translate(replies, _query([0, 1, 2], 3))
    assert chunk.shape == (3, 1, 7) and chunk.dtype == torch.float32
    assert chunk[2, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_oft_lists_become_chunks_with_k_from_the_reply() -> None:
    replies = [[np.full(14, float(env * 100 + step)) for step in range(25)] for env in range(2)]
    chunk = OpenVlaActions().translate(replies, _query([0, 1], 2))
    assert chunk.shape == (2, 25, 14)
    assert chunk[1, 24, 0].item() == 124.0


def test_two_dimensional_array_replies_are_chunks() -> None:
    chunk = OpenVlaActions().translate([np.ones((5, 7))], _query([0], 1))
    assert chunk.shape == (1, 5, 7)


def test_action_select_and_action_dim_map_the_reply_into_the_env_layout() -> None:
    reply = [np.arange(7, dtype=np.float64)]
    chunk = OpenVlaActions(action_select="6,0,1", action_dim=5).translate(reply, _query([0], 1))
    assert chunk.tolist() == [[[6.0, 0.0, 1.0, 0.0, 0.0]]]
    padded = OpenVlaActions(action_dim=8).translate(reply, _query([0], 1))
    assert padded.tolist() == [[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]]]


@pytest.mark.parametrize(
    "reply, translator, match",
    [
        ([np.zeros(7)], OpenVlaActions(), r"one reply per queried env \(2\)"),
        ([np.zeros(7), [np.zeros(7)] * 8], OpenVlaActions(), "different shapes"),
        (["error", np.zeros(7)], OpenVlaActions(), "reply 0: expected an action array"),
        ([{"action": 1}, np.zeros(7)], OpenVlaActions(), "reply 0"),
        ([np.array(["a"] * 7), np.zeros(7)], OpenVlaActions(), "numeric"),
        ([[np.zeros(7), np.zeros(6)], np.zeros(7)], OpenVlaActions(), "rows differ"),
        ([np.zeros(7), np.zeros(7)], OpenVlaActions(action_dim=6), "action_select"),
        ([np.zeros(7), np.zeros(7)], OpenVlaActions(action_select="0,9"), "exceeds"),
    ],
)
def test_malformed_replies_raise_action_errors(reply: Any, translator: OpenVlaActions, match: str) -> None:
    with pytest.raises(ActionError, match=match):
        translator.translate(reply, _query([0, 1], 2))


@pytest.mark.parametrize(
    "options",
    [{"action_select": "a,b"}, {"action_select": "-1"}, {"action_dim": 0}, {"action_select": "0,1,2", "action_dim": 2}],
)
def test_bad_action_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OpenVlaActions(**options)
