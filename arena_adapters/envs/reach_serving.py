"""The ``reach`` expert behind each protocol's reference server, and the client options that match.

Each front-end takes the observation exactly as that protocol's upstream server hands it to its
model, and replies in that model's format:

- GR00T: upstream's nested policy interface (``get_action(observation, options) -> (action, info)``,
  ``reset``, ``get_modality_config``), served with ``format="flat"`` so the reference server wraps it
  like ``--use-sim-policy-wrapper`` (flat DROID keys, 180x320 images, strict validation);
- OpenPI: ``infer(obs) -> {"actions": (10, 8)}`` on DROID keys with 224x224 images;
- OpenVLA: ``policy(payload) -> (7,)`` from one 224x224 image and the instruction. Its 7 values are
  joints 0-5 and the gripper; the client maps them onto the env's 8 with
  ``action_select="0,1,2,3,4,5,5,6"`` (joint 6 repeats joint 5, which the expert leaves at 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from arena_adapters.envs.reach_expert import RandomReachPolicy, ReachExpert

GR00T_HORIZON = 32
OPENPI_HORIZON = 10
LOCAL_HORIZON = 16

_DROID_MODALITIES: dict[str, dict[str, Any]] = {
    "video": {"delta_indices": [0], "modality_keys": ["exterior_image_1_left", "wrist_image_left"]},
    "state": {"delta_indices": [0], "modality_keys": ["joint_position", "gripper_position"]},
    "action": {
        "delta_indices": list(range(GR00T_HORIZON)),
        "modality_keys": ["joint_position", "gripper_position"],
        "action_configs": [
            {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None},
            {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None},
        ],
    },
    "language": {"delta_indices": [0], "modality_keys": ["annotation.language.language_instruction"]},
}


class Gr00tReachExpert:
    """The expert in GR00T's nested policy interface (OXE_DROID modalities, 32-step chunks)."""

    def __init__(self) -> None:
        self.expert = ReachExpert(GR00T_HORIZON)
        self.resets = 0

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """``video.exterior_image_1_left`` (B, T, H, W, 3) and ``state.joint_position`` (B, T, 7)
        -> ``joint_position`` (B, 32, 7) and ``gripper_position`` (B, 32, 1)."""
        images = np.asarray(observation["video"]["exterior_image_1_left"])[:, -1]
        joints = np.asarray(observation["state"]["joint_position"])[:, -1]
        chunk = self.expert.plan(images, joints).numpy()
        return {"joint_position": chunk[..., :7], "gripper_position": chunk[..., 7:]}, {}

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Nothing to forget (the expert is stateless); counted."""
        self.resets += 1
        return {}

    def get_modality_config(self) -> dict[str, dict[str, Any]]:
        """The OXE_DROID modality configs, as plain field maps."""
        return {name: dict(config) for name, config in _DROID_MODALITIES.items()}


class OpenPiReachExpert:
    """The expert as an openpi policy: ``infer`` on one DROID observation without batch axis."""

    metadata: Mapping[str, Any] = MappingProxyType({})

    def __init__(self) -> None:
        self.expert = ReachExpert(OPENPI_HORIZON)

    def infer(self, obs: Mapping[str, Any]) -> dict[str, NDArray[np.float32]]:
        """``observation/exterior_image_1_left`` (224, 224, 3), ``observation/joint_position`` (7,)
        -> ``{"actions": (10, 8)}``."""
        images = np.asarray(obs["observation/exterior_image_1_left"])[None]
        joints = np.asarray(obs["observation/joint_position"], dtype=np.float32)[None]
        return {"actions": self.expert.plan(images, joints)[0].numpy()}


class OpenVlaReachExpert:
    """The expert as an OpenVLA model: ``predict_action(payload) -> (7,)`` from one image."""

    def __init__(self) -> None:
        self.expert = ReachExpert()

    def predict_action(self, payload: Mapping[str, Any]) -> NDArray[np.float64]:
        """``{"image": (H, W, 3), "instruction": str}`` -> joints 0-5 and gripper, float64 (7,)."""
        action = self.expert.act_from_image(np.asarray(payload["image"])[None])[0]
        return torch.cat((action[:6], action[-1:])).double().numpy()


class LocalReachExpert:
    """The expert for the in-process ``local`` adapter: nested env rows in, ``(k, 16, 8)`` out."""

    def __init__(self) -> None:
        self.expert = ReachExpert(LOCAL_HORIZON)

    def __call__(self, observation: Mapping[str, Any]) -> torch.Tensor:
        chunk = self.expert.plan(observation["camera_obs"]["external_camera_rgb"], observation["policy"]["joint_pos"])
        return chunk.to(observation["policy"]["joint_pos"].device)


@dataclass(frozen=True)
class ServedExpert:
    """How to serve the ``reach`` expert through one adapter's protocol.

    Attributes:
        adapter: the adapter name.
        make_policy: builds the policy object handed to the reference server (or, for ``local``,
            to the adapter itself).
        server_options: options of the adapter's reference server.
        client_options: options of the adapter that fit this expert.
    """

    adapter: str
    make_policy: Callable[[], Any]
    server_options: Mapping[str, Any] = field(default_factory=dict)
    client_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def in_process(self) -> bool:
        """True for the ``local`` adapter (no server)."""
        return self.adapter == "local"


SERVED_EXPERTS: Mapping[str, ServedExpert] = MappingProxyType({
    "gr00t": ServedExpert("gr00t", Gr00tReachExpert, {"format": "flat"}, {"execute_steps": 8}),
    "openpi": ServedExpert("openpi", OpenPiReachExpert, {}, {"execute_steps": 8}),
    "openvla": ServedExpert(
        "openvla",
        OpenVlaReachExpert,
        {},
        {"action_select": "0,1,2,3,4,5,5,6", "action_dim": 8, "max_concurrency": 16},
    ),
    "local": ServedExpert("local", LocalReachExpert, {}, {"execute_steps": 8}),
})
"""The adapters the ``reach`` expert can be served through, by name."""

gr00t_expert = Gr00tReachExpert()
"""For ``arena-adapters serve gr00t --policy arena_adapters.envs.reach_serving:gr00t_expert --format flat``."""
openpi_expert = OpenPiReachExpert()
"""For ``arena-adapters serve openpi --policy arena_adapters.envs.reach_serving:openpi_expert``."""
openvla_expert = OpenVlaReachExpert()
"""For ``arena-adapters serve openvla --policy arena_adapters.envs.reach_serving:openvla_expert``."""
local_expert = LocalReachExpert()
"""For ``arena-adapters eval --adapter local --policy arena_adapters.envs.reach_serving:local_expert``."""
random_policy = RandomReachPolicy()
"""For ``arena-adapters eval --adapter local --policy arena_adapters.envs.reach_serving:random_policy``."""
