"""The core conformance kit, for both variants of the ``openvla`` adapter."""

from __future__ import annotations

from typing import Any, ClassVar

from arena_adapters.testing.conformance import AdapterContract


class TestOftContract(AdapterContract):
    """OFT: action chunks of 8; the variant reaches the server and the probe too."""

    adapter = "openvla"
    options: ClassVar[dict[str, Any]] = {"variant": "oft"}


class TestOpenVlaContract(AdapterContract):
    """OpenVLA: one action per reply, so every env is re-queried at every step. It reads only the
    external camera of the DROID example observation."""

    adapter = "openvla"
    optional_observation_keys: ClassVar[frozenset[str]] = frozenset(
        {"camera_obs.wrist_camera_rgb", "policy.joint_pos", "policy.gripper_pos"}
    )
