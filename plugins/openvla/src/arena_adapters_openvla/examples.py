"""An example observation for the ``openvla`` adapter's default translators (both variants)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def ramp_images(num_envs: int, height: int, width: int, offset: int = 0, device: str = "cpu") -> torch.Tensor:
    """Distinct deterministic uint8 RGB images ``(num_envs, height, width, 3)``."""
    count = num_envs * height * width * 3
    values = (np.arange(count) * 7 + offset) % 251
    return torch.from_numpy(values.astype(np.uint8).reshape(num_envs, height, width, 3)).to(device)


def example_observation(num_envs: int, device: str = "cpu", height: int = 224, width: int = 224) -> dict[str, Any]:
    """The Isaac Lab Arena DROID layout with distinct values per env: external and wrist cameras
    (uint8), joint positions (7) and gripper position (1), float32."""
    joints = torch.arange(num_envs * 7, dtype=torch.float32).reshape(num_envs, 7) * 0.1
    return {
        "camera_obs": {
            "external_camera_rgb": ramp_images(num_envs, height, width, device=device),
            "wrist_camera_rgb": ramp_images(num_envs, height, width, offset=100, device=device),
        },
        "policy": {
            "joint_pos": joints.to(device),
            "gripper_pos": torch.full((num_envs, 1), 0.5, device=device),
        },
    }
