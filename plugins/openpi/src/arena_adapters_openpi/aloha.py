"""ALOHA as openpi's ``examples/aloha_real`` / ``aloha_sim`` clients send it (pi0 ALOHA configs).

Wire observation, in this order: ``state`` float64 (14,) (two arms: 6 joints + gripper each),
``images``: a map of uint8 CHW (3, 224, 224) cameras ``cam_high`` (required), ``cam_low``,
``cam_left_wrist``, ``cam_right_wrist``, and ``prompt`` (when an instruction is set).
Reply ``actions`` (H, 14), H = 50. The server's metadata frame carries ``reset_pose``.

Default paths: ``policy.joint_pos`` (N, 14) and ``camera_obs.cam_high_rgb``, ``camera_obs.cam_low_rgb``,
``camera_obs.cam_left_wrist_rgb``, ``camera_obs.cam_right_wrist_rgb`` (N, H, W, 3); the optional
cameras are left out when the observation does not have them.
"""

from __future__ import annotations

from arena_adapters_openpi.layout import ImageField, Layout, StateField

LAYOUT = Layout(
    name="aloha",
    fields=(
        StateField("state", ("state",), ("policy.joint_pos",), 14),
        ImageField("cam_high", ("images", "cam_high"), "camera_obs.cam_high_rgb", channels_first=True),
        ImageField("cam_low", ("images", "cam_low"), "camera_obs.cam_low_rgb", channels_first=True, required=False),
        ImageField("cam_left_wrist", ("images", "cam_left_wrist"), "camera_obs.cam_left_wrist_rgb",
                   channels_first=True, required=False),
        ImageField("cam_right_wrist", ("images", "cam_right_wrist"), "camera_obs.cam_right_wrist_rgb",
                   channels_first=True, required=False),
    ),
    action_dim=14,
    action_horizon=50,
)
