"""LIBERO as openpi's ``examples/libero/main.py`` sends it (pi0/pi05 LIBERO configs).

Wire observation, in this order: ``observation/image`` and ``observation/wrist_image`` uint8
(224, 224, 3), ``observation/state`` float64 (8,) = end-effector position (3) + axis-angle (3) +
gripper joint positions (2), and ``prompt`` (when set). Reply ``actions`` (H, 7) (H = 10 for pi05_libero,
50 for pi0_libero).

The upstream LIBERO client rotates robosuite's images by 180 degrees before sending; Isaac Lab
cameras need no such flip. Default paths: ``camera_obs.external_camera_rgb``,
``camera_obs.wrist_camera_rgb``, and the state concatenated from ``policy.eef_pos`` (N, 3),
``policy.eef_axis_angle`` (N, 3), ``policy.gripper_pos`` (N, 2).
"""

from __future__ import annotations

from arena_adapters_openpi.layout import ImageField, Layout, StateField

LAYOUT = Layout(
    name="libero",
    fields=(
        ImageField("image", ("observation/image",), "camera_obs.external_camera_rgb"),
        ImageField("wrist_image", ("observation/wrist_image",), "camera_obs.wrist_camera_rgb"),
        StateField(
            "state", ("observation/state",), ("policy.eef_pos", "policy.eef_axis_angle", "policy.gripper_pos"), 8
        ),
    ),
    action_dim=7,
    action_horizon=10,
)
