"""The OpenVLA plugin's served ``reach`` expert and its null policy."""

from __future__ import annotations

import numpy as np
from arena_adapters_openvla.dummy_policy import NullPolicy
from arena_adapters_openvla.served_expert import OftReachExpert, OpenVlaReachExpert
from arena_adapters_openvla.server import resolve_policy

from arena_adapters.envs.reach import ReachEnv
from arena_adapters.imaging import resize_with_pad


def test_the_null_policy_replies_constant_zeros() -> None:
    single = resolve_policy("null")
    assert isinstance(single, NullPolicy)
    action = single({"image": np.zeros((4, 4, 3), dtype=np.uint8), "instruction": "x"})
    assert isinstance(action, np.ndarray) and action.shape == (7,) and not action.any()
    chunk = resolve_policy("null", variant="oft", chunk_size=5, action_dim=14)({})
    assert isinstance(chunk, list) and len(chunk) == 5 and chunk[0].shape == (14,)


def test_the_served_expert_acts_from_one_image() -> None:
    obs, _ = ReachEnv(num_envs=1, seed=2).reset()
    image = resize_with_pad(obs["camera_obs"]["external_camera_rgb"], 224, 224)[0].numpy()
    action = OpenVlaReachExpert().predict_action({"image": image, "instruction": "reach"})
    assert action.shape == (7,) and action.dtype == np.float64 and action[-1] == 0.0  # not on the target yet


def test_the_demo_expert_replies_oft_chunks_from_image_and_state() -> None:
    obs, _ = ReachEnv(num_envs=1, seed=2).reset()
    image = resize_with_pad(obs["camera_obs"]["external_camera_rgb"], 224, 224)[0].numpy()
    state = np.concatenate((obs["policy"]["joint_pos"][0].numpy(), obs["policy"]["gripper_pos"][0].numpy()))
    chunk = OftReachExpert().get_server_action({"full_image": image, "wrist_image": image,
                                                "state": state.astype(np.float64), "instruction": "reach"})
    assert len(chunk) == 16 and chunk[0].shape == (8,) and chunk[0].dtype == np.float64
