"""The scripted expert of the ``reach`` environment, acting from what a policy server receives.

It finds the table and the red target in the external camera image by colour (so it works on any
image size, after resize-with-pad to 224x224 or 180x320 alike), computes the arm joints that put the
gripper on the target, and closes the gripper once it is there:

- with joint positions (GR00T, OpenPI, local): :meth:`ReachExpert.plan` predicts the arm's motion
  and returns a whole action chunk, closing the gripper at the predicted arrival;
- from one image alone (OpenVLA): :meth:`ReachExpert.act_from_image` also finds the gripper's blue
  ring in the image and closes the gripper when ring and target coincide.

Everything is batched torch code; inputs may be numpy arrays or tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arena_adapters.envs import reach

_TABLE_TOLERANCE = 24
_CLOSE_RADIUS = 0.3 * reach.SUCCESS_RADIUS
"""Predicted or seen distance to the target under which the expert closes the gripper."""


def as_tensor(value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor view of a numpy array / tensor / nested list (no copy where possible)."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        array = np.asarray(value)
        if not array.flags.writeable:
            array = array.copy()
        tensor = torch.from_numpy(array)
    return tensor if dtype is None else tensor.to(dtype)


def _first_and_last(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and one past the last True along the last axis (0, 0 where none)."""
    length = mask.shape[-1]
    positions = torch.arange(length, device=mask.device)
    first = torch.where(mask, positions, length).amin(dim=-1)
    last = torch.where(mask, positions + 1, 0).amax(dim=-1)
    return first.float(), last.float()


def _centroids(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre centroids ``(B, 2)`` as ``(x, y)`` of ``(B, H, W)`` masks, and whether any pixel was set."""
    weights = mask.float()
    count = weights.sum(dim=(1, 2))
    ys = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32) + 0.5
    xs = torch.arange(mask.shape[2], device=mask.device, dtype=torch.float32) + 0.5
    x = (weights.sum(dim=1) * xs).sum(dim=1) / count.clamp(min=1)
    y = (weights.sum(dim=2) * ys).sum(dim=1) / count.clamp(min=1)
    return torch.stack((x, y), dim=-1), count > 0


class TableFrame:
    """Pixel <-> table coordinates of a batch of external images, found from the table's colour.

    Args:
        pixels: ``(B, H, W, 3)`` images as int16.
    """

    def __init__(self, pixels: torch.Tensor) -> None:
        r, g, b = pixels.unbind(dim=-1)
        red, green, blue = reach.TABLE_COLOR
        table = ((r - red).abs() <= _TABLE_TOLERANCE) & ((g - green).abs() <= _TABLE_TOLERANCE)
        table &= (b - blue).abs() <= _TABLE_TOLERANCE
        left, right = _first_and_last(table.any(dim=1))
        top, bottom = _first_and_last(table.any(dim=2))
        self.found = (right > left) & (bottom > top)
        self.center = torch.stack(((left + right) / 2, (top + bottom) / 2), dim=-1)
        half_u, half_v = reach.TABLE_HALF_SIZE
        self.scale = torch.stack(((right - left) / (2 * half_u), (bottom - top) / (2 * half_v)), dim=-1).clamp(min=1e-6)

    def to_table(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` pixel ``(x, y)`` -> table ``(u, v)``."""
        relative = (pixels - self.center) / self.scale
        return torch.stack((relative[:, 0], -relative[:, 1]), dim=-1)


def _color_mask(pixels: torch.Tensor, kind: str) -> torch.Tensor:
    r, g, b = pixels.unbind(dim=-1)
    if kind == "target":
        return (r > 150) & (g < 100) & (b < 100)
    return (b > 140) & (b > r + 60) & (b > g + 40)


def locate_all(images: Any, kinds: tuple[str, ...] = ("target",)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each of ``kinds`` (``"target"``: the red target, ``"effector"``: the gripper's blue ring),
    its table positions ``(B, 2)`` in external images ``(B, H, W, 3)`` uint8 and ``(B,)`` whether it
    was seen. The table is found once for all kinds."""
    pixels = as_tensor(images).to(torch.int16)
    frame = TableFrame(pixels)
    found = []
    for kind in kinds:
        centers, seen = _centroids(_color_mask(pixels, kind))
        found.append((frame.to_table(centers), seen & frame.found))
    return found


def locate(images: Any, kind: str = "target") -> tuple[torch.Tensor, torch.Tensor]:
    """Table positions ``(B, 2)`` of ``kind`` (see :func:`locate_all`) and ``(B,)`` whether it was seen."""
    return locate_all(images, (kind,))[0]


class ReachExpert:
    """Solves ``reach`` from camera images (and joint positions when it has them).

    Args:
        horizon: actions per chunk returned by :meth:`plan`.
    """

    def __init__(self, horizon: int = 16) -> None:
        self.horizon = horizon

    def plan(self, images: Any, joint_pos: Any, horizon: int | None = None) -> torch.Tensor:
        """Action chunks ``(B, horizon, 8)`` float32 for external images ``(B, H, W, 3)`` and joints ``(B, 7)``.

        Every step targets the joints that put the gripper on the target; the gripper closes from
        the step at which the arm is predicted to be there. Envs where no target is seen hold still.
        """
        steps = self.horizon if horizon is None else horizon
        joints = as_tensor(joint_pos, torch.float32).reshape(-1, reach.NUM_JOINTS)
        target, seen = locate(images, "target")
        target = target.to(joints.device)
        goal = joints.clone()
        goal[:, :2] = torch.where(seen.unsqueeze(1), reach.inverse_kinematics(target), joints[:, :2])
        elapsed = torch.arange(1, steps + 1, device=joints.device, dtype=torch.float32).view(1, -1, 1)
        reach_per_step = elapsed * reach.JOINT_SPEED
        delta = (goal - joints).unsqueeze(1)
        predicted = joints.unsqueeze(1) + torch.maximum(torch.minimum(delta, reach_per_step), -reach_per_step)
        distance = torch.linalg.vector_norm(reach.forward_kinematics(predicted) - target.unsqueeze(1), dim=-1)
        close = (distance <= _CLOSE_RADIUS) & seen.unsqueeze(1)
        chunk = torch.cat((goal.unsqueeze(1).expand(-1, steps, -1), close.unsqueeze(-1).float()), dim=-1)
        return chunk.contiguous()

    def act_from_image(self, images: Any) -> torch.Tensor:
        """One action ``(B, 8)`` per external image ``(B, H, W, 3)``, with no joint positions.

        Arm joints 0-1 target the target, joints 2-6 target 0; the gripper closes when the blue
        ring around the gripper is seen on the target.
        """
        (target, target_seen), (effector, effector_seen) = locate_all(images, ("target", "effector"))
        action = torch.zeros(len(target), reach.ACTION_DIM, device=target.device)
        action[:, :2] = reach.inverse_kinematics(target)
        distance = torch.linalg.vector_norm(effector - target, dim=-1)
        action[:, -1] = ((distance <= _CLOSE_RADIUS) & target_seen & effector_seen).float()
        return action


class RandomReachPolicy:
    """Uniformly random joint targets and gripper commands: the baseline that should fail.

    A callable for the ``local`` adapter: ``policy(observation) -> (k, 1, 8)``.
    """

    def __init__(self, seed: int = 0) -> None:
        self._generator = torch.Generator().manual_seed(seed)

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        joints = observation["policy"]["joint_pos"]
        k = joints.shape[0]
        sample = torch.rand(k, 1, reach.ACTION_DIM, generator=self._generator)
        sample[..., : reach.NUM_JOINTS] = (2 * sample[..., : reach.NUM_JOINTS] - 1) * reach.JOINT_LIMIT
        return sample.to(joints.device)
