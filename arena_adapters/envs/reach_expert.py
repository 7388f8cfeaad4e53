"""The scripted expert of the ``reach`` environment, acting from what a policy server receives.

It finds the table and the red target in the external camera image by colour (so it works on any
image size, after resize-with-pad to 224x224 or 180x320 alike), computes the arm joints that put the
gripper on the target, and closes the gripper once it is there:

- with joint positions (GR00T, OpenPI, local): :meth:`ReachExpert.plan` plans the arm's motion
  towards where the target is *seen* and returns a whole action chunk, closing the gripper at the
  predicted arrival. The target keeps moving, so the later actions of a chunk go stale: executing
  a few of them and planning again succeeds, replaying a whole long chunk misses;
- from one image alone (OpenVLA): :meth:`ReachExpert.act_from_image` also finds the gripper's blue
  ring in the image and closes the gripper when ring and target coincide.

Everything is batched array code with no loop over envs. It runs on numpy arrays (as reference
servers decode them; this module imports no torch) or on torch tensors on any device (the in-process
``local`` adapter), returning the same kind it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arena_adapters.envs import reach_geometry as geometry
from arena_adapters.envs.reach_geometry import forward_kinematics, inverse_kinematics, namespace

CLOSE_RADIUS = 0.3 * geometry.SUCCESS_RADIUS
"""Predicted or seen distance to the target under which the expert closes the gripper."""

_TABLE_TOLERANCE = 24
_TARGET_MIN_RED = 190
"""Only the target is this red (table 156, floor 52, effector 40)."""
_EFFECTOR_MIN_BLUE = 160
"""Only the effector ring is this blue (table 88, floor 66, target 35)."""
_SCAN_STRIDE = 4
"""The table's edges are found from every 4th row / column."""


def _float32(array: Any) -> Any:
    if namespace(array) is np:
        return np.asarray(array, dtype=np.float32)
    return array.float()


def _positions(like: Any, count: int, stride: int) -> Any:
    """Pixel-centre coordinates ``stride * i + 0.5`` of ``count`` sampled pixels, like ``like``."""
    if namespace(like) is np:
        return np.arange(count, dtype=np.float32) * stride + 0.5
    return namespace(like).arange(count, device=like.device, dtype=like.dtype) * stride + 0.5


def _extent(mask: Any) -> tuple[Any, Any]:
    """First index and count of the True run along the last axis of ``(B, N)`` ``mask`` (the table
    is one rectangle, so its run has no gaps)."""
    flags = _float32(mask)
    return _float32(flags.argmax(-1)), flags.sum(-1)


class TableFrame:
    """Pixel <-> table coordinates of a batch of external images, found from the table's colour.

    Args:
        images: ``(B, H, W, 3)`` uint8 images (numpy or torch).
    """

    def __init__(self, images: Any) -> None:
        low = [max(0, value - _TABLE_TOLERANCE) for value in geometry.TABLE_COLOR]
        high = [min(255, value + _TABLE_TOLERANCE) for value in geometry.TABLE_COLOR]

        def table(pixels: Any) -> Any:
            inside = (pixels[..., 0] >= low[0]) & (pixels[..., 0] <= high[0])
            inside &= (pixels[..., 1] >= low[1]) & (pixels[..., 1] <= high[1])
            inside &= (pixels[..., 2] >= low[2]) & (pixels[..., 2] <= high[2])
            return inside

        left, width = _extent(table(images[:, ::_SCAN_STRIDE]).any(1))
        top, height = _extent(table(images[:, :, ::_SCAN_STRIDE]).any(2))
        self.found = (width > 0) & (height > 0)
        xp = namespace(left)
        self.center = xp.stack((left + width / 2, top + height / 2), -1)
        half_u, half_v = geometry.TABLE_HALF_SIZE
        self.scale = xp.clip(xp.stack((width / (2 * half_u), height / (2 * half_v)), -1), 1e-6, None)

    def to_table(self, pixels: Any) -> Any:
        """``(B, 2)`` pixel ``(x, y)`` -> table ``(u, v)``."""
        relative = (pixels - self.center) / self.scale
        return namespace(relative).stack((relative[:, 0], -relative[:, 1]), -1)


def _centroids(mask: Any, stride: int) -> tuple[Any, Any]:
    """Pixel centroids ``(B, 2)`` as ``(x, y)`` of ``(B, h, w)`` masks sampled every ``stride``
    pixels, and whether any pixel was set."""
    weights = _float32(mask)
    count = weights.sum((1, 2))
    xs = _positions(weights, weights.shape[2], stride)
    ys = _positions(weights, weights.shape[1], stride)
    divisor = namespace(count).clip(count, 1.0, None)
    x = (weights.sum(1) * xs).sum(-1) / divisor
    y = (weights.sum(2) * ys).sum(-1) / divisor
    return namespace(x).stack((x, y), -1), count > 0


def _mask(images: Any, kind: str) -> tuple[Any, int]:
    """The pixels of ``kind`` (``"target"`` or ``"effector"``), sampled every 2nd pixel of large
    images (the shapes stay several samples wide), and the stride used."""
    stride = 2 if min(images.shape[1], images.shape[2]) >= 120 else 1
    sampled = images[:, ::stride, ::stride]
    if kind == "target":
        return sampled[..., 0] >= _TARGET_MIN_RED, stride
    if kind == "effector":
        return sampled[..., 2] >= _EFFECTOR_MIN_BLUE, stride
    raise ValueError(f"kind must be 'target' or 'effector', got {kind!r}")


def locate_all(images: Any, kinds: tuple[str, ...] = ("target",)) -> list[tuple[Any, Any]]:
    """For each of ``kinds`` (``"target"``: the red target, ``"effector"``: the gripper's blue ring),
    its table positions ``(B, 2)`` in external images ``(B, H, W, 3)`` uint8 and ``(B,)`` whether it
    was seen. The table is found once for all kinds."""
    if namespace(images) is np:
        images = np.asarray(images)
    frame = TableFrame(images)
    found = []
    for kind in kinds:
        mask, stride = _mask(images, kind)
        centers, seen = _centroids(mask, stride)
        found.append((frame.to_table(centers), seen & frame.found))
    return found


def locate(images: Any, kind: str = "target") -> tuple[Any, Any]:
    """Table positions ``(B, 2)`` of ``kind`` (see :func:`locate_all`) and ``(B,)`` whether it was seen."""
    return locate_all(images, (kind,))[0]


class ReachExpert:
    """Solves ``reach`` from camera images (and joint positions when it has them).

    Args:
        horizon: actions per chunk returned by :meth:`plan`.
    """

    def __init__(self, horizon: int = 32) -> None:
        self.horizon = horizon

    def plan(self, images: Any, joint_pos: Any, gripper_pos: Any = None, horizon: int | None = None) -> Any:
        """Action chunks ``(B, horizon, 8)`` float32 for external images ``(B, H, W, 3)``, joints
        ``(B, 7)`` and optionally gripper positions ``(B, 1)``.

        Step ``t`` targets the joints the arm can reach after ``t + 1`` steps on its way to the pose
        that puts the gripper on the target as seen; the gripper closes from the step at which the
        arm is predicted to be there, and a closed gripper opens first. Envs where no target is
        seen hold still.
        """
        steps = self.horizon if horizon is None else horizon
        joints = _float32(joint_pos).reshape(-1, geometry.NUM_JOINTS)
        xp = namespace(joints)
        target, seen = locate(images, "target")
        target = _float32(target)
        if xp is not np:
            target, seen = target.to(joints.device), seen.to(joints.device)
        goal = joints * 1
        goal[:, :2] = xp.where(seen[:, None], inverse_kinematics(target), joints[:, :2])
        elapsed = _positions(joints, steps, 1) + 0.5  # 1 .. steps
        reach = elapsed[None, :, None] * geometry.JOINT_SPEED
        delta = (goal - joints)[:, None, :]
        planned = joints[:, None, :] + xp.clip(delta, -reach, reach)
        offset = forward_kinematics(planned) - target[:, None, :]
        close = ((offset * offset).sum(-1) <= CLOSE_RADIUS**2) & seen[:, None]
        if gripper_pos is not None:
            gripper = _float32(gripper_pos).reshape(-1, 1)
            opening_steps = xp.ceil(gripper / np.float32(geometry.GRIPPER_SPEED))
            close &= elapsed[None, :] > opening_steps
        return xp.concatenate((planned, _float32(close)[..., None]), -1)

    def act_from_image(self, images: Any) -> Any:
        """One action ``(B, 8)`` per external image ``(B, H, W, 3)``, with no joint positions.

        Arm joints 0-1 target the target, joints 2-6 target 0; the gripper closes when the blue
        ring around the gripper is seen on the target.
        """
        (target, target_seen), (effector, effector_seen) = locate_all(images, ("target", "effector"))
        xp = namespace(target)
        joints = _float32(inverse_kinematics(target))
        rest = xp.concatenate([joints[:, :1] * 0] * (geometry.NUM_JOINTS - 2), -1)
        offset = effector - target
        close = ((offset * offset).sum(-1) <= CLOSE_RADIUS**2) & target_seen & effector_seen
        return xp.concatenate((joints, rest, _float32(close)[:, None]), -1)
