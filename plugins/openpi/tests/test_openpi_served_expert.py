"""The openpi plugin's served ``reach`` expert and its null policy."""

from __future__ import annotations

import numpy as np
from arena_adapters_openpi.builtin_policy import NullPolicy
from arena_adapters_openpi.served_expert import OpenPiReachExpert
from arena_adapters_openpi.server import ReferenceServer

from arena_adapters.envs.reach import ReachEnv
from arena_adapters.imaging import resize_with_pad


def test_the_null_policy_replies_a_constant_chunk() -> None:
    server = ReferenceServer("null", port=0, action_horizon=12)
    assert isinstance(server.policy, NullPolicy)
    reply = server.policy.infer({})
    assert reply["actions"].shape == (12, 8) and not reply["actions"].any()
    assert server.policy.infer({"anything": 1})["actions"] is reply["actions"]


def test_the_served_expert_answers_one_droid_observation() -> None:
    obs, _ = ReachEnv(num_envs=1, seed=2).reset()
    image = resize_with_pad(obs["camera_obs"]["external_camera_rgb"], 224, 224)[0].numpy()
    reply = OpenPiReachExpert().infer({
        "observation/exterior_image_1_left": image,
        "observation/joint_position": obs["policy"]["joint_pos"][0].numpy().astype(np.float64),
        "observation/gripper_position": obs["policy"]["gripper_pos"][0].numpy().astype(np.float64),
    })
    assert reply["actions"].shape == (16, 8) and reply["actions"].dtype == np.float32
