"""The arena-adapters conformance kit, pointed at the 'vlaeval' adapter and its reference server."""

from __future__ import annotations

from arena_adapters.testing.conformance import AdapterContract


class TestVlaEvalContract(AdapterContract):
    adapter = "vlaeval"
