"""LIBERO and ALOHA style example observations for the openpi translators (tests, benchmarks).

The DROID example is the core's: :func:`arena_adapters.examples.droid_observation`.
"""

from __future__ import annotations

from typing import Any

import torch


def _images(generator: torch.Generator, num_envs: int, height: int, width: int, device: str) -> torch.Tensor:
    images = torch.randint(0, 256, (num_envs, height, width, 3), generator=generator, dtype=torch.uint8)
    return images.to(device)


def _floats(generator: torch.Generator, num_envs: int, dim: int, device: str) -> torch.Tensor:
    return (torch.rand((num_envs, dim), generator=generator) * 2 - 1).to(device)


def libero_observation(
    num_envs: int, device: str | torch.device = "cpu", *, seed: int = 0, height: int = 256, width: int = 256
) -> dict[str, Any]:
    """A LIBERO-like observation for the default LIBERO paths: two cameras, ``policy.eef_pos`` (N, 3),
    ``policy.eef_axis_angle`` (N, 3), ``policy.gripper_pos`` (N, 2)."""
    generator = torch.Generator().manual_seed(seed)
    device = str(device)
    return {
        "camera_obs": {
            "external_camera_rgb": _images(generator, num_envs, height, width, device),
            "wrist_camera_rgb": _images(generator, num_envs, height, width, device),
        },
        "policy": {
            "eef_pos": _floats(generator, num_envs, 3, device),
            "eef_axis_angle": _floats(generator, num_envs, 3, device),
            "gripper_pos": _floats(generator, num_envs, 2, device),
        },
    }


def aloha_observation(
    num_envs: int,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
    height: int = 480,
    width: int = 640,
    cameras: tuple[str, ...] = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"),
) -> dict[str, Any]:
    """An ALOHA-like observation for the default ALOHA paths: ``policy.joint_pos`` (N, 14) and
    ``camera_obs.<camera>_rgb`` (N, H, W, 3) for each of ``cameras``."""
    generator = torch.Generator().manual_seed(seed)
    device = str(device)
    return {
        "camera_obs": {f"{name}_rgb": _images(generator, num_envs, height, width, device) for name in cameras},
        "policy": {"joint_pos": _floats(generator, num_envs, 14, device)},
    }
