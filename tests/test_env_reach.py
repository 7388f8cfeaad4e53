"""The built-in ``reach`` environment: Isaac Lab shaped observations, the RL env contract, a task
whose moving goals are only visible in the images (so stale chunks fail), and the environment registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import arena_adapters as aa
from arena_adapters.envs import (
    ENTRY_POINT_GROUP,
    available_environments,
    environment_options,
    environments,
    make_environment,
)
from arena_adapters.envs.reach import (
    ACTION_DIM,
    GRIPPER_CLOSED,
    SUCCESS_RADIUS,
    ReachEnv,
    forward_kinematics,
    inverse_kinematics,
)
from arena_adapters.envs.reach_expert import ReachExpert, locate
from arena_adapters.envs.reach_serving import LocalReachExpert, RandomReachPolicy
from arena_adapters.errors import ConfigError, UnknownEnvironmentError
from arena_adapters.imaging import resize_with_pad


def _hold(env: ReachEnv, gripper: float = 0.0) -> torch.Tensor:
    actions = torch.zeros(env.num_envs, ACTION_DIM)
    actions[:, :7] = env.joint_pos
    actions[:, 7] = gripper
    return actions


def test_observations_are_isaac_lab_droid_shaped() -> None:
    env = make_environment("reach", num_envs=3, image_height=48, image_width=64)
    obs, extras = env.reset()
    assert extras == {}
    assert set(obs) == {"policy", "camera_obs"}
    policy, cameras = obs["policy"], obs["camera_obs"]
    assert policy["joint_pos"].dtype == torch.float32 and policy["joint_pos"].shape == (3, 7)
    assert policy["gripper_pos"].dtype == torch.float32 and policy["gripper_pos"].shape == (3, 1)
    for name in ("external_camera_rgb", "wrist_camera_rgb"):
        assert cameras[name].dtype == torch.uint8 and cameras[name].shape == (3, 48, 64, 3)
    assert env.num_envs == 3 and env.device == "cpu" and env.max_episode_length == 400
    assert env.unwrapped is env and env.cfg.task_description


def test_default_cameras_are_droid_sized() -> None:
    obs, _ = make_environment("reach", num_envs=1).reset()
    assert obs["camera_obs"]["external_camera_rgb"].shape == (1, 180, 320, 3)


def test_the_target_is_only_in_the_images() -> None:
    env = ReachEnv(num_envs=4, seed=1)
    env.reset()
    targets = env.target.clone()
    env.reset(seed=2)
    assert not torch.allclose(targets, env.target)
    # proprioception does not encode the target: same joints, different targets, different images
    env.joint_pos[:] = 0.0
    env.target[:] = targets
    before = env._observe()
    env.target[:] = -targets
    after = env._observe()
    assert torch.equal(before["policy"]["joint_pos"], after["policy"]["joint_pos"])
    assert not torch.equal(before["camera_obs"]["external_camera_rgb"], after["camera_obs"]["external_camera_rgb"])


@pytest.mark.parametrize("size", [(180, 320), (224, 224), (90, 160), (256, 200)])
def test_the_target_is_found_after_resize_with_pad(size: tuple[int, int]) -> None:
    env = ReachEnv(num_envs=8, seed=3)
    obs, _ = env.reset()
    images = resize_with_pad(obs["camera_obs"]["external_camera_rgb"], *size)
    found, seen = locate(images, "target")
    assert bool(seen.all())
    assert float((found - env.target).abs().max()) < 0.03


def test_step_follows_the_rl_env_contract_with_auto_reset() -> None:
    env = ReachEnv(num_envs=4, seed=0, max_episode_length=5)
    env.reset()
    for step in range(1, 5):
        obs, reward, terminated, truncated, extras = env.step(_hold(env))
        assert not terminated.any() and not truncated.any()
        assert torch.equal(env.episode_length_buf, torch.full((4,), step))
    old_targets = env.target.clone()
    obs, reward, terminated, truncated, extras = env.step(_hold(env))
    assert truncated.all() and not terminated.any()
    assert torch.equal(extras["time_outs"], truncated)
    assert torch.equal(extras["episode_length"], torch.full((4,), 5))
    assert not extras["success"].any() and torch.equal(reward, torch.zeros(4))
    # finished envs restarted inside step(): new targets, fresh counters, open gripper
    assert torch.equal(env.episode_length_buf, torch.zeros(4, dtype=torch.long))
    assert not torch.allclose(old_targets, env.target)
    assert torch.equal(obs["policy"]["gripper_pos"], torch.zeros(4, 1))


def test_closing_on_the_target_succeeds_and_elsewhere_fails() -> None:
    env = ReachEnv(num_envs=2, seed=4, num_targets=1, target_speed=0.0)
    env.reset()
    goal = inverse_kinematics(env.target)
    actions = _hold(env)
    actions[0, :2] = goal[0]  # env 0 goes to its target, env 1 stays where it is
    for _ in range(80):
        env.step(actions)
    actions[:, 7] = 1.0
    for _ in range(10):
        _, reward, terminated, truncated, extras = env.step(actions)
        if terminated.any():
            break
    assert terminated.tolist() == [True, True] and not truncated.any()
    assert extras["success"].tolist() == [True, False]
    assert reward.tolist() == [1.0, 0.0]
    assert 0 < GRIPPER_CLOSED <= 1


def test_each_grasp_brings_a_new_moving_target_until_the_last() -> None:
    env = ReachEnv(num_envs=3, seed=5, num_targets=2, target_speed=0.01)
    env.reset()
    start = env.target.clone()
    env.step(_hold(env))
    drift = torch.linalg.vector_norm(env.target - start, dim=-1)
    assert torch.allclose(drift, torch.full((3,), 0.01), atol=1e-5)  # inside the range: no bounce yet
    for grasp in (1, 2):
        env.target_velocity.zero_()
        actions = _hold(env)
        actions[:, :2] = inverse_kinematics(env.target)
        for _ in range(80):
            env.step(actions)
        previous = env.target.clone()
        actions[:, 7] = 1.0
        for _ in range(6):
            _, reward, terminated, _, extras = env.step(actions)
            if reward.any():
                break
        assert reward.tolist() == [1.0, 1.0, 1.0]
        if grasp == 1:  # a new target elsewhere; the episode goes on; the gripper must open first
            assert not terminated.any() and env.grasps.tolist() == [1, 1, 1]
            away = torch.linalg.vector_norm(env.target - previous, dim=-1)
            assert bool((away > SUCCESS_RADIUS).all()) and not env.armed.any()
            actions[:, 7] = 0.0
            for _ in range(5):
                env.step(actions)
            assert env.armed.all()
        else:  # the last grasp ends the episode as a success
            assert terminated.all() and extras["success"].all()


def test_targets_bounce_inside_their_range() -> None:
    env = ReachEnv(num_envs=64, seed=6, target_speed=0.1, image_height=16, image_width=16)
    env.reset()
    for _ in range(40):
        env.step(_hold(env))
    assert bool((env.target[:, 0].abs() <= 0.85 + 1e-6).all() and (env.target[:, 1].abs() <= 0.45 + 1e-6).all())


def test_kinematics_round_trip() -> None:
    points = torch.tensor([[0.0, 0.0], [0.8, 0.4], [-0.8, -0.4], [0.3, -0.2]])
    assert torch.allclose(forward_kinematics(inverse_kinematics(points)), points, atol=1e-5)


def test_seeded_envs_are_reproducible() -> None:
    def rollout(seed: int) -> list[torch.Tensor]:
        env = ReachEnv(num_envs=3, seed=seed, max_episode_length=3)
        obs, _ = env.reset()
        frames = [obs["camera_obs"]["external_camera_rgb"].clone()]
        for _ in range(4):
            obs, *_ = env.step(torch.zeros(3, ACTION_DIM))
            frames.append(obs["camera_obs"]["wrist_camera_rgb"].clone())
        return frames

    assert all(torch.equal(a, b) for a, b in zip(rollout(5), rollout(5), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(rollout(5), rollout(6), strict=True))


def test_images_of_a_step_stay_valid_during_the_next() -> None:
    env = ReachEnv(num_envs=2, seed=0)
    obs, _ = env.reset()
    kept = obs["camera_obs"]["external_camera_rgb"]
    copy = kept.clone()
    env.step(torch.zeros(2, ACTION_DIM))
    assert torch.equal(kept, copy)


def test_usable_inside_and_outside_inference_mode() -> None:
    env = ReachEnv(num_envs=2, image_height=32, image_width=48, max_episode_length=2)
    with torch.inference_mode():
        env.reset()
        env.step(torch.zeros(2, ACTION_DIM))
        env.step(torch.zeros(2, ACTION_DIM))
    obs, *_ = env.step(torch.zeros(2, ACTION_DIM))
    env.reset()
    assert obs["policy"]["joint_pos"].shape == (2, 7)


def test_wrong_actions_are_rejected() -> None:
    env = ReachEnv(num_envs=2)
    env.reset()
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 8\), got \(2, 7\)"):
        env.step(torch.zeros(2, 7))


def test_scales_to_thousands_of_envs() -> None:
    env = ReachEnv(num_envs=2048, image_height=24, image_width=32, max_episode_length=2)
    obs, _ = env.reset()
    for _ in range(2):
        obs, _, terminated, truncated, _ = env.step(torch.zeros(2048, ACTION_DIM))
    assert obs["camera_obs"]["wrist_camera_rgb"].shape == (2048, 24, 32, 3)
    assert bool((terminated | truncated).all())


def _success_rate(policy_fn: Any, num_envs: int = 8, steps: int = 300, **options: Any) -> tuple[float, int]:
    env = ReachEnv(num_envs=num_envs, seed=11, image_height=90, image_width=160)
    obs, _ = env.reset()
    successes = episodes = 0
    with aa.load_policy("local", policy=policy_fn, **options) as policy:
        for _ in range(steps):
            obs, _, terminated, truncated, extras = env.step(policy.get_action(obs))
            done = terminated | truncated
            if done.any():
                policy.reset(done.nonzero().flatten())
                episodes += int(done.sum())
                successes += int(extras["success"].sum())
    return successes / max(episodes, 1), episodes


def test_the_scripted_expert_succeeds_when_it_replans_often() -> None:
    rate, episodes = _success_rate(LocalReachExpert(), execute_steps=8)
    assert episodes >= 12 and rate > 0.9


def test_replaying_whole_stale_chunks_mostly_fails() -> None:
    rate, episodes = _success_rate(LocalReachExpert(), steps=150)  # 32 of 32 actions per chunk
    assert episodes >= 16 and rate < 0.3


def test_the_expert_works_on_numpy_arrays_as_on_tensors() -> None:
    env = ReachEnv(num_envs=4, seed=2)
    obs, _ = env.reset()
    images, joints = obs["camera_obs"]["external_camera_rgb"], obs["policy"]["joint_pos"]
    gripper = obs["policy"]["gripper_pos"]
    expert = ReachExpert(horizon=16)
    from_tensors = expert.plan(images, joints, gripper)
    from_arrays = expert.plan(images.numpy(), joints.numpy(), gripper.numpy())
    assert isinstance(from_tensors, torch.Tensor) and from_arrays.shape == (4, 16, 8)
    assert from_arrays.dtype == np.float32
    assert np.allclose(from_tensors.numpy(), from_arrays, atol=1e-5)
    assert np.allclose(expert.act_from_image(images).numpy(), expert.act_from_image(images.numpy()), atol=1e-5)


def test_the_expert_from_one_resized_image_succeeds() -> None:
    expert = ReachExpert()

    def from_image(observation: dict[str, Any]) -> torch.Tensor:
        images = resize_with_pad(observation["camera_obs"]["external_camera_rgb"], 224, 224)
        return expert.act_from_image(images).unsqueeze(1)

    rate, episodes = _success_rate(from_image, num_envs=6, steps=200)
    assert episodes >= 6 and rate > 0.9


def test_a_random_policy_mostly_fails() -> None:
    rate, episodes = _success_rate(RandomReachPolicy(seed=3), steps=100)
    assert episodes >= 8 and rate < 0.1


def test_environment_registry() -> None:
    assert "reach" in available_environments()
    info = environments()["reach"]
    assert info.target == "arena_adapters.envs.reach:ReachEnv"
    assert {option.name for option in environment_options("reach")} >= {"image_height", "seed"}
    env = make_environment("reach", num_envs=2, image_height="32", image_width="48")
    assert env.reset()[0]["camera_obs"]["external_camera_rgb"].shape == (2, 32, 48, 3)
    with pytest.raises(UnknownEnvironmentError, match="unknown environment 'nope'; valid names: .*reach"):
        make_environment("nope", num_envs=1)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['colour'\] for environment 'reach'"):
        make_environment("reach", num_envs=1, colour="red")
    assert ENTRY_POINT_GROUP == "arena_adapters.environments"


def test_third_party_environments_plug_in_by_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from arena_adapters import envs

    point = metadata.EntryPoint(name="tiny", value="arena_adapters.envs.reach:ReachEnv", group=ENTRY_POINT_GROUP)
    original = metadata.entry_points

    def fake_entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == ENTRY_POINT_GROUP:
            return [point]
        return original(**kwargs)

    monkeypatch.setattr(envs.metadata, "entry_points", fake_entry_points)
    assert available_environments() == ["reach", "tiny"]
    env = make_environment("tiny", num_envs=2, image_height=16, image_width=16)
    assert env.num_envs == 2
