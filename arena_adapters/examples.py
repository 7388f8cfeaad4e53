"""Example observations in Isaac Lab Arena layouts, for adapters' ``example_observation``, probes,
the conformance kit and tests. Deterministic, on any device."""

from __future__ import annotations

from typing import Any

import torch

DROID_JOINTS = 7


def ramp_images(num_envs: int, height: int, width: int, *, offset: int = 0,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """Distinct deterministic uint8 RGB images ``(num_envs, height, width, 3)``."""
    values = (torch.arange(num_envs * height * width * 3, device=device) * 7 + offset) % 251
    return values.to(torch.uint8).reshape(num_envs, height, width, 3)


def droid_observation(num_envs: int, device: str | torch.device = "cpu", *, height: int = 180,
                      width: int = 320) -> dict[str, Any]:
    """The Isaac Lab Arena DROID observation with distinct values per env: two uint8 cameras
    ``camera_obs.external_camera_rgb`` / ``wrist_camera_rgb`` (N, H, W, 3), ``policy.joint_pos``
    float32 (N, 7) and ``policy.gripper_pos`` float32 (N, 1)."""
    joints = torch.linspace(-1.0, 1.0, num_envs * DROID_JOINTS, device=device).reshape(num_envs, DROID_JOINTS)
    return {
        "camera_obs": {
            "external_camera_rgb": ramp_images(num_envs, height, width, device=device),
            "wrist_camera_rgb": ramp_images(num_envs, height, width, offset=100, device=device),
        },
        "policy": {"joint_pos": joints, "gripper_pos": torch.full((num_envs, 1), 0.5, device=device)},
    }
