"""The ``reach`` expert served by the OpenVLA reference server (``arena-adapters demo --adapter openvla``).

The demo serves :class:`OftReachExpert`, an OpenVLA-OFT model: ``get_server_action(observation)``
takes the OFT observation (``full_image``, a wrist image, ``state`` = 7 joints + gripper,
``instruction``) as the ``openvla`` adapter sends it with ``variant="oft"``, and returns a chunk of
16 float64 ``(8,)`` actions, as OFT's ``deploy.py`` replies. Chunks keep the demo's request count
(and its time on a small CPU) in line with the other protocols.

:class:`OpenVlaReachExpert` is the plain OpenVLA model: ``predict_action(payload)`` from one
224x224 image and the instruction, one float64 ``(7,)`` action (joints 0-5 and the gripper; the client
maps them onto the env's 8 with ``action_select="0,1,2,3,4,5,5,6"``, see :data:`OPENVLA_CLIENT_OPTIONS`).

Neither imports torch: the expert runs on the decoded numpy arrays.

    arena-adapters serve openvla --variant oft --policy arena_adapters_openvla.served_expert:oft_reach_expert
    arena-adapters serve openvla --policy arena_adapters_openvla.served_expert:reach_expert
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from arena_adapters.envs import reach_geometry as geometry
from arena_adapters.envs.reach_expert import ReachExpert

HORIZON = 16

OFT_SERVER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"variant": "oft", "chunk_size": HORIZON, "action_dim": geometry.ACTION_DIM})
"""Reference server options for :class:`OftReachExpert` (the null policy then replies the same shape)."""
OFT_CLIENT_OPTIONS: Mapping[str, Any] = MappingProxyType({"variant": "oft", "execute_steps": 8, "max_concurrency": 16})
"""The ``openvla`` adapter options that fit :class:`OftReachExpert`."""
OPENVLA_CLIENT_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"action_select": "0,1,2,3,4,5,5,6", "action_dim": 8, "max_concurrency": 16})
"""The ``openvla`` adapter options that fit :class:`OpenVlaReachExpert`."""


class OftReachExpert:
    """The ``reach`` expert as an OpenVLA-OFT model: 16-step chunks from the image and the state."""

    def __init__(self) -> None:
        self.expert = ReachExpert(HORIZON)

    def get_server_action(self, observation: Mapping[str, Any]) -> list[NDArray[np.float64]]:
        """``full_image`` (H, W, 3) and ``state`` (8,) -> 16 float64 actions (8,)."""
        state = np.asarray(observation["state"], dtype=np.float32)
        chunk = self.expert.plan(np.asarray(observation["full_image"])[None],
                                 state[None, : geometry.NUM_JOINTS], state[None, geometry.NUM_JOINTS :])
        return list(np.asarray(chunk[0], dtype=np.float64))


class OpenVlaReachExpert:
    """The ``reach`` expert as an OpenVLA model: one action per image, no joint positions."""

    def __init__(self) -> None:
        self.expert = ReachExpert()

    def predict_action(self, payload: Mapping[str, Any]) -> NDArray[np.float64]:
        """``{"image": (H, W, 3), "instruction": str}`` -> joints 0-5 and gripper, float64 (7,)."""
        action = np.asarray(self.expert.act_from_image(np.asarray(payload["image"])[None])[0], dtype=np.float64)
        return np.concatenate((action[:6], action[-1:]))


oft_reach_expert = OftReachExpert()
"""For ``arena-adapters serve openvla --variant oft --policy arena_adapters_openvla.served_expert:oft_reach_expert``."""
reach_expert = OpenVlaReachExpert()
"""For ``arena-adapters serve openvla --policy arena_adapters_openvla.served_expert:reach_expert``."""
