"""The wire keys and sizes of GR00T's ``OXE_DROID`` embodiment (no torch: servers import them)."""

from __future__ import annotations

EXTERIOR_CAMERA = "exterior_image_1_left"
WRIST_CAMERA = "wrist_image_left"
JOINT_POSITION = "joint_position"
GRIPPER_POSITION = "gripper_position"
LANGUAGE_KEY = "annotation.language.language_instruction"
DROID = "droid"
IMAGE_SIZE = (180, 320)
ACTION_HORIZON = 32
JOINTS = 7
