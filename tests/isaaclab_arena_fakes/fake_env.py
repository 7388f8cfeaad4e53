"""An env with the surface Arena's runners touch on an Isaac Lab ``ManagerBasedRLEnv`` (Isaac Sim stubbed)."""

from __future__ import annotations

import types
from typing import Any

import torch

NUM_JOINTS = 7


class FakeArenaEnv:
    """``num_envs`` envs on ``device``; env ``i`` terminates every ``lengths[i]`` steps.

    Observations are Arena's DROID groups (``policy``: ``joint_pos`` (7), ``gripper_pos`` (1);
    ``camera_obs``: ``external_camera_rgb``, ``wrist_camera_rgb`` uint8 ``(N, H, W, 3)``), done envs are
    reset inside ``step()``, ``action_space.shape`` is ``(num_envs, 8)``, ``unwrapped.cfg.task_description``
    and ``unwrapped.get_language_instruction()`` give the task text. Every action and close is recorded.
    """

    def __init__(self, lengths: list[int], task_description: str = "put the cube in the bowl",
                 device: str = "cpu") -> None:
        self.num_envs = len(lengths)
        self.device = device
        self.lengths = torch.tensor(lengths, device=device)
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=device)
        self.cfg = types.SimpleNamespace(task_description=task_description)
        self.action_space = types.SimpleNamespace(shape=(self.num_envs, NUM_JOINTS + 1))
        self.actions: list[torch.Tensor] = []
        self.inference_mode_steps: list[bool] = []
        self.closed = False

    @property
    def unwrapped(self) -> FakeArenaEnv:
        return self

    def seed(self, seed: int | None = None) -> list[int | None]:
        self.seeded = seed
        return [seed]

    def get_language_instruction(self) -> str:
        return str(self.cfg.task_description)

    def reset(self, seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        self.episode_length_buf.zero_()
        return self._observations(), {}

    def step(self, action: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor,
                                                  dict[str, Any]]:
        assert not self.closed, "step() after close()"
        self.actions.append(action)
        self.inference_mode_steps.append(torch.is_inference_mode_enabled())
        self.episode_length_buf += 1
        terminated = self.episode_length_buf >= self.lengths
        truncated = torch.zeros_like(terminated)
        self.episode_length_buf[terminated] = 0
        return self._observations(), terminated.float(), terminated, truncated, {}

    def close(self) -> None:
        self.closed = True

    def _observations(self) -> dict[str, Any]:
        n = self.num_envs
        joints = torch.zeros(n, NUM_JOINTS, device=self.device)
        joints[:, 0] = torch.arange(n, device=self.device, dtype=torch.float32) * 0.1
        joints[:, 1] = self.episode_length_buf.float() * 0.01
        image = torch.full((n, 12, 16, 3), 90, dtype=torch.uint8, device=self.device)
        return {
            "policy": {"joint_pos": joints, "gripper_pos": torch.zeros(n, 1, device=self.device)},
            "camera_obs": {"external_camera_rgb": image, "wrist_camera_rgb": image.clone()},
        }
