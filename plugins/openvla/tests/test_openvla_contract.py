"""The core conformance kit, for both variants of the ``openvla`` adapter."""

from __future__ import annotations

from typing import Any, ClassVar

from arena_adapters.testing.conformance import AdapterContract


class TestOftContract(AdapterContract):
    """OFT: action chunks of 8; the variant reaches the server and the probe too."""

    adapter = "openvla"
    options: ClassVar[dict[str, Any]] = {"variant": "oft"}


class TestOpenVlaContract(AdapterContract):
    """OpenVLA: one action per reply, so every env is re-queried at every step."""

    adapter = "openvla"
