"""The ``reach`` expert served by the GR00T reference server (``arena-adapters demo --adapter gr00t``).

:class:`Gr00tReachExpert` is a policy in upstream's nested interface with the ``OXE_DROID``
modalities and 32-step chunks; the demo serves it with ``format="flat"``, so the server wraps it like
``--use-sim-policy-wrapper`` (flat DROID keys, 180x320 images, strict validation) and the client is
the stock ``gr00t`` adapter. It imports no torch: the expert runs on the decoded numpy arrays.

    arena-adapters serve gr00t --policy arena_adapters_gr00t.served_expert:reach_expert --format flat
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from arena_adapters.envs.reach_expert import ReachExpert
from arena_adapters_gr00t import droid_keys as droid
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.modality import ActionConfig, ModalityConfig

HORIZON = droid.ACTION_HORIZON


def reach_modality_configs() -> dict[str, ModalityConfig]:
    """The ``OXE_DROID`` modality configs with absolute joint positions (what the expert plans)."""
    absolute = ActionConfig("ABSOLUTE", "NON_EEF", "DEFAULT")
    return {
        protocol.VIDEO: ModalityConfig((0,), (droid.EXTERIOR_CAMERA, droid.WRIST_CAMERA)),
        protocol.STATE: ModalityConfig((0,), (droid.JOINT_POSITION, droid.GRIPPER_POSITION)),
        protocol.ACTION: ModalityConfig(tuple(range(HORIZON)), (droid.JOINT_POSITION, droid.GRIPPER_POSITION),
                                        action_configs=(absolute, absolute)),
        protocol.LANGUAGE: ModalityConfig((0,), (droid.LANGUAGE_KEY,)),
    }


class Gr00tReachExpert:
    """The ``reach`` expert in GR00T's nested policy interface (``OXE_DROID``, 32-step chunks)."""

    def __init__(self) -> None:
        self.expert = ReachExpert(HORIZON)
        self.resets = 0

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """``video.exterior_image_1_left`` (B, T, H, W, 3), ``state.joint_position`` (B, T, 7) and
        ``state.gripper_position`` (B, T, 1) -> ``joint_position`` (B, 32, 7) and
        ``gripper_position`` (B, 32, 1), from the last time step of each."""
        video, state = observation[protocol.VIDEO], observation[protocol.STATE]
        chunk = self.expert.plan(np.asarray(video[droid.EXTERIOR_CAMERA])[:, -1],
                                 np.asarray(state[droid.JOINT_POSITION])[:, -1],
                                 np.asarray(state[droid.GRIPPER_POSITION])[:, -1])
        joints, gripper = chunk[..., : droid.JOINTS], chunk[..., droid.JOINTS :]
        return {droid.JOINT_POSITION: joints, droid.GRIPPER_POSITION: gripper}, {}

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Nothing to forget (the expert is stateless); counted."""
        self.resets += 1
        return {}

    def get_modality_config(self) -> dict[str, ModalityConfig]:
        return reach_modality_configs()


reach_expert = Gr00tReachExpert()
"""For ``arena-adapters serve gr00t --policy arena_adapters_gr00t.served_expert:reach_expert --format flat``."""
