"""The GR00T plugin's served ``reach`` expert and its null policy."""

from __future__ import annotations

import numpy as np
from arena_adapters_gr00t.reference_policy import FlatPolicyWrapper, NullPolicy, as_served_policy
from arena_adapters_gr00t.served_expert import Gr00tReachExpert

from arena_adapters.envs.reach import ReachEnv


def _flat_observation(num_envs: int) -> dict[str, object]:
    obs, _ = ReachEnv(num_envs=num_envs, seed=1).reset()
    image = obs["camera_obs"]["external_camera_rgb"].numpy()[:, None]
    return {
        "video.exterior_image_1_left": image,
        "video.wrist_image_left": image,
        "state.joint_position": obs["policy"]["joint_pos"].numpy()[:, None],
        "state.gripper_position": obs["policy"]["gripper_pos"].numpy()[:, None],
        "annotation.language.language_instruction": ["reach"] * num_envs,
    }


def test_the_null_policy_replies_one_constant_chunk_per_batch_size() -> None:
    policy = as_served_policy("null", format="flat")
    assert isinstance(policy, NullPolicy)
    first, info = policy.get_action(_flat_observation(3))
    again, _ = policy.get_action(_flat_observation(3))
    assert info == {} and set(first) == {"action.joint_position", "action.gripper_position"}
    assert first["action.joint_position"].shape == (3, 32, 7) and first["action.gripper_position"].shape == (3, 32, 1)
    assert not first["action.joint_position"].any()
    assert again["action.joint_position"] is first["action.joint_position"]  # cached: no work per request
    nested, _ = as_served_policy("null", format="nested").get_action({"video": {"cam": np.zeros((2, 1, 4, 4, 3))}})
    assert nested["joint_position"].shape == (2, 32, 7)


def test_the_served_expert_plans_flat_droid_chunks_behind_the_sim_wrapper() -> None:
    served = as_served_policy(Gr00tReachExpert(), format="flat")
    assert isinstance(served, FlatPolicyWrapper)
    action, _ = served.get_action(_flat_observation(2))
    assert action["action.joint_position"].shape == (2, 32, 7) and action["action.joint_position"].dtype == np.float32
    assert action["action.gripper_position"].shape == (2, 32, 1)
    nested = FlatPolicyWrapper._nested(_flat_observation(2), served.get_modality_config())
    assert nested["language"]["annotation.language.language_instruction"] == [["reach"], ["reach"]]
