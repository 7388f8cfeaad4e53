"""DROID as openpi's ``examples/droid/main.py`` sends it (pi0/pi0-FAST/pi05 DROID configs).

Wire observation, in this order: ``observation/exterior_image_1_left`` and
``observation/wrist_image_left`` uint8 (224, 224, 3), ``observation/joint_position`` (7,),
``observation/gripper_position`` (1,), both float64 as the example client sends them, and ``prompt``
(when an instruction is set).
Reply ``actions`` (H, 8): 7 joint values + gripper (H = 10 for pi0_droid, 15 for pi05_droid).

Defaults read Isaac Lab Arena's DROID observation: ``camera_obs.external_camera_rgb``,
``camera_obs.wrist_camera_rgb``, ``policy.joint_pos`` (N, 7), ``policy.gripper_pos`` (N, 1).
"""

from __future__ import annotations

from arena_adapters_openpi.layout import ImageField, Layout, StateField

LAYOUT = Layout(
    name="droid",
    fields=(
        ImageField("exterior_image_1_left", ("observation/exterior_image_1_left",), "camera_obs.external_camera_rgb"),
        ImageField("wrist_image_left", ("observation/wrist_image_left",), "camera_obs.wrist_camera_rgb"),
        StateField("joint_position", ("observation/joint_position",), ("policy.joint_pos",), 7),
        StateField("gripper_position", ("observation/gripper_position",), ("policy.gripper_pos",), 1),
    ),
    action_dim=8,
    action_horizon=10,
)
