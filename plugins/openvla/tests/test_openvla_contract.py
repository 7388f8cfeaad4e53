"""The core conformance kit, for both variants of the ``openvla`` adapter."""

from __future__ import annotations

from typing import Any, ClassVar

from arena_adapters_openvla.plugin import IMAGE_SIZE

from arena_adapters.examples import droid_observation
from arena_adapters.parts import Observation
from arena_adapters.records import AdapterRecord
from arena_adapters.testing.conformance import AdapterContract


class TestOftContract(AdapterContract):
    """OFT: action chunks of 8; the variant reaches the server and the probe too. It reads the
    whole DROID observation (both cameras and the state)."""

    adapter = "openvla"
    options: ClassVar[dict[str, Any]] = {"variant": "oft"}

    def make_observation(self, record: AdapterRecord, num_envs: int, device: str = "cpu") -> Observation:
        return droid_observation(num_envs, device, height=IMAGE_SIZE, width=IMAGE_SIZE)


class TestOpenVlaContract(AdapterContract):
    """OpenVLA: one action per reply, so every env is re-queried at every step. It reads only the
    external camera (the adapter's example observation)."""

    adapter = "openvla"
