"""The geometry and constants of the ``reach`` task, for numpy arrays and torch tensors alike.

Shared by the environment (torch, any device) and its scripted expert, which also runs inside
reference servers on plain numpy arrays: this module imports no torch, so a server process serving
the expert starts without it.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

NUM_JOINTS = 7
ACTION_DIM = NUM_JOINTS + 1
JOINT_LIMIT = math.pi
JOINT_SPEED = 0.05
"""Largest joint motion per step (radians): about 2-3 s to cross the table at 15 Hz."""
GRIPPER_SPEED = 0.25
"""Largest gripper motion per step."""
GRIPPER_CLOSED = 0.9
"""Gripper position at which a grasp is attempted."""
GRIPPER_OPEN = 0.1
"""Gripper position under which the gripper is open again (ready for the next grasp)."""

TABLE_HALF_SIZE = (1.0, 0.6)
"""The table spans ``u`` in [-1, 1] (left to right) and ``v`` in [-0.6, 0.6] (near to far)."""
TARGET_HALF_RANGE = (0.85, 0.45)
"""Targets stay within ``|u| <= 0.85``, ``|v| <= 0.45`` (they bounce off these bounds when moving)."""
ARM_BASE = (0.0, -1.0)
LINK_LENGTHS = (0.9, 0.9)
TARGET_RADIUS = 0.06
SUCCESS_RADIUS = 0.08
EFFECTOR_RING = (0.065, 0.09)
WRIST_VIEW_WIDTH = 1.5
"""Table units seen across the wrist camera image."""
HOME_POINT = (0.0, -0.35)

TABLE_COLOR = (156, 122, 88)
FLOOR_COLOR = (52, 56, 66)
TARGET_COLOR = (225, 30, 35)
EFFECTOR_COLOR = (40, 90, 225)
FINGER_COLOR = (70, 70, 75)

TASK_DESCRIPTION = "grasp each red target on the table in turn; they move"


def namespace(array: Any) -> Any:
    """``torch`` for a torch tensor, else ``numpy``: the functions below work on either."""
    if type(array).__module__.startswith("torch"):
        return sys.modules["torch"]
    return np


def forward_kinematics(joint_pos: Any) -> Any:
    """End-effector table position ``(..., 2)`` from joints ``(..., >=2)`` (only joints 0 and 1 count)."""
    xp = namespace(joint_pos)
    shoulder, elbow = joint_pos[..., 0], joint_pos[..., 1]
    first, second = LINK_LENGTHS
    u = ARM_BASE[0] + first * xp.sin(shoulder) + second * xp.sin(shoulder + elbow)
    v = ARM_BASE[1] + first * xp.cos(shoulder) + second * xp.cos(shoulder + elbow)
    return xp.stack((u, v), -1)


def inverse_kinematics(points: Any) -> Any:
    """Joints 0 and 1 ``(..., 2)`` that put the end effector at table points ``(..., 2)``.

    Unreachable points give the closest reachable pose in the same direction.
    """
    xp = namespace(points)
    first, second = LINK_LENGTHS
    du = points[..., 0] - ARM_BASE[0]
    dv = points[..., 1] - ARM_BASE[1]
    squared = xp.clip(du * du + dv * dv, 1e-9, None)
    cos_elbow = xp.clip((squared - first**2 - second**2) / (2 * first * second), -1.0, 1.0)
    elbow = xp.arccos(cos_elbow)
    shoulder = xp.arctan2(du, dv) - xp.arctan2(second * xp.sin(elbow), first + second * xp.cos(elbow))
    return xp.stack((shoulder, elbow), -1)
