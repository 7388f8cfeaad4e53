"""DROID (``OXE_DROID``): Isaac Lab Arena's DROID observations <-> the GR00T N1.6-DROID server.

The upstream DROID example (``examples/DROID/main_gr00t.py``) talks to a server started with
``--use-sim-policy-wrapper``, i.e. the *flat* format, and sends, in this key order::

    video.exterior_image_1_left   uint8   (B, 1, 180, 320, 3)   resize-with-pad of the exterior camera
    video.wrist_image_left        uint8   (B, 1, 180, 320, 3)
    state.joint_position          float32 (B, 1, 7)
    state.gripper_position        float32 (B, 1, 1)
    annotation.language.language_instruction   [str] * B

It resizes with openpi's PIL ``resize_with_pad`` (aspect kept, zero padding); here the same resize is
done batched on the tensor's device (:func:`arena_adapters.imaging.resize_with_pad`). The reply's
``action.joint_position`` (B, 32, 7) and ``action.gripper_position`` (B, 32, 1) become a (B, 32, 8)
chunk; the example executes 8 actions per query (the adapter's default ``execute_steps``) and
binarizes the gripper at 0.5 (``gripper_threshold=0.5`` here; off by default).
"""

from __future__ import annotations

from typing import Any

from arena_adapters.options import Option
from arena_adapters_gr00t import droid_keys, protocol
from arena_adapters_gr00t.embodiment import (
    ActionGroupSpec,
    CameraSpec,
    EmbodimentSpec,
    StateSpec,
    load_spec,
    parse_image_size,
)
from arena_adapters_gr00t.translators import Gr00tActions, Gr00tObservations

EXTERIOR_CAMERA = droid_keys.EXTERIOR_CAMERA
WRIST_CAMERA = droid_keys.WRIST_CAMERA
JOINT_POSITION = droid_keys.JOINT_POSITION
GRIPPER_POSITION = droid_keys.GRIPPER_POSITION
LANGUAGE_KEY = droid_keys.LANGUAGE_KEY
DROID = droid_keys.DROID
IMAGE_SIZE = droid_keys.IMAGE_SIZE
ACTION_HORIZON = droid_keys.ACTION_HORIZON
JOINTS = droid_keys.JOINTS

DEFAULT_PATHS = {
    "exterior_camera": "camera_obs.external_camera_rgb",
    "wrist_camera": "camera_obs.wrist_camera_rgb",
    "joint_pos": "policy.joint_pos",
    "gripper_pos": "policy.gripper_pos",
}

FORMAT_OPTION = Option("format", str, None, "observation format of the server: flat "
                       "(--use-sim-policy-wrapper, as the DROID example; the default for droid) or nested",
                       choices=(None, *protocol.FORMATS))
EMBODIMENT_OPTION = Option("embodiment", object, DROID, "'droid', or an embodiment config for another robot "
                           "(dict or YAML path, see arena_adapters_gr00t.embodiment)")

OBSERVATION_OPTIONS: tuple[Option, ...] = (
    EMBODIMENT_OPTION,
    FORMAT_OPTION,
    Option("exterior_camera", str, DEFAULT_PATHS["exterior_camera"], "observation path of the exterior RGB camera"),
    Option("wrist_camera", str, DEFAULT_PATHS["wrist_camera"], "observation path of the wrist RGB camera"),
    Option("joint_pos", str, DEFAULT_PATHS["joint_pos"], "observation path of the 7 arm joint positions"),
    Option("gripper_pos", str, DEFAULT_PATHS["gripper_pos"], "observation path of the gripper position"),
    Option("image_size", object, IMAGE_SIZE, "(height, width) images are resized-with-pad to"),
)

ACTION_OPTIONS: tuple[Option, ...] = (
    EMBODIMENT_OPTION,
    FORMAT_OPTION,
    Option("gripper_threshold", float, None, "binarize the gripper action at this value (the DROID example "
           "uses 0.5); default: pass it through"),
)


def droid_spec(
    *,
    format: str = protocol.FLAT,
    exterior_camera: str = DEFAULT_PATHS["exterior_camera"],
    wrist_camera: str = DEFAULT_PATHS["wrist_camera"],
    joint_pos: str = DEFAULT_PATHS["joint_pos"],
    gripper_pos: str = DEFAULT_PATHS["gripper_pos"],
    image_size: Any = IMAGE_SIZE,
    gripper_threshold: float | None = None,
) -> EmbodimentSpec:
    """The DROID embodiment spec with the given Isaac Lab observation paths."""
    return EmbodimentSpec(
        format=format,
        cameras=(CameraSpec(exterior_camera, EXTERIOR_CAMERA), CameraSpec(wrist_camera, WRIST_CAMERA)),
        states=(StateSpec(joint_pos, JOINT_POSITION), StateSpec(gripper_pos, GRIPPER_POSITION)),
        language_key=LANGUAGE_KEY,
        image_size=parse_image_size(image_size),
        actions=(
            ActionGroupSpec(JOINT_POSITION, JOINTS),
            ActionGroupSpec(GRIPPER_POSITION, 1, binarize=gripper_threshold),
        ),
        action_dim=JOINTS + 1,
    )


def is_droid(embodiment: Any) -> bool:
    """True for ``"droid"`` (any case) and the embodiment tag ``"oxe_droid"``."""
    return isinstance(embodiment, str) and embodiment.strip().lower() in (DROID, "oxe_droid")


def droid_observations(
    embodiment: Any = DROID,
    format: str | None = None,
    exterior_camera: str = DEFAULT_PATHS["exterior_camera"],
    wrist_camera: str = DEFAULT_PATHS["wrist_camera"],
    joint_pos: str = DEFAULT_PATHS["joint_pos"],
    gripper_pos: str = DEFAULT_PATHS["gripper_pos"],
    image_size: Any = IMAGE_SIZE,
) -> Gr00tObservations:
    """The observation translator of the ``gr00t`` adapter (``gr00t.droid``): DROID, or the embodiment
    config given as ``embodiment`` (then the DROID path options do not apply)."""
    if not is_droid(embodiment):
        return Gr00tObservations(load_spec(embodiment), format=format)
    return Gr00tObservations(droid_spec(format=format or protocol.FLAT, exterior_camera=exterior_camera,
                                        wrist_camera=wrist_camera, joint_pos=joint_pos, gripper_pos=gripper_pos,
                                        image_size=image_size))


def droid_actions(embodiment: Any = DROID, format: str | None = None,
                  gripper_threshold: float | None = None) -> Gr00tActions:
    """The action translator of the ``gr00t`` adapter (``gr00t.droid``): DROID's (B, 32, 7) + (B, 32, 1)
    -> (B, 32, 8), or the action layout of the embodiment config given as ``embodiment``."""
    if not is_droid(embodiment):
        return Gr00tActions(load_spec(embodiment), format=format)
    return Gr00tActions(droid_spec(format=format or protocol.FLAT, gripper_threshold=gripper_threshold))
