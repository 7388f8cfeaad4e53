"""The ``reach`` expert served by the openpi reference server (``arena-adapters demo --adapter openpi``).

:class:`OpenPiReachExpert` is an openpi policy: ``infer`` takes one DROID observation without batch
axis (224x224 images, as the stock ``openpi`` adapter sends them) and replies ``{"actions": (16, 8)}``.
It imports no torch: the expert runs on the decoded numpy arrays.

    arena-adapters serve openpi --policy arena_adapters_openpi.served_expert:reach_expert
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from arena_adapters.envs.reach_expert import ReachExpert

HORIZON = 16


class OpenPiReachExpert:
    """The ``reach`` expert as an openpi policy (DROID keys, 16-step chunks)."""

    metadata: Mapping[str, Any] = MappingProxyType({})

    def __init__(self) -> None:
        self.expert = ReachExpert(HORIZON)

    def infer(self, obs: Mapping[str, Any]) -> dict[str, NDArray[np.float32]]:
        """``observation/exterior_image_1_left`` (224, 224, 3), ``observation/joint_position`` (7,),
        ``observation/gripper_position`` (1,) -> ``{"actions": (16, 8)}``."""
        chunk = self.expert.plan(np.asarray(obs["observation/exterior_image_1_left"])[None],
                                 np.asarray(obs["observation/joint_position"])[None],
                                 np.asarray(obs["observation/gripper_position"])[None])
        return {"actions": chunk[0]}


reach_expert = OpenPiReachExpert()
"""For ``arena-adapters serve openpi --policy arena_adapters_openpi.served_expert:reach_expert``."""
