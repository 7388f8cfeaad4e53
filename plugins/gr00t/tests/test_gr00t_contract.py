"""The core conformance kit, pointed at the gr00t adapter."""

from __future__ import annotations

from arena_adapters.testing.conformance import AdapterContract


class TestGr00tContract(AdapterContract):
    adapter = "gr00t"
