"""The test module ``arena-adapters check NAME`` runs: the contract for the adapter in
``$ARENA_ADAPTERS_CHECK_ADAPTER``."""

from __future__ import annotations

import os

from arena_adapters.testing.conformance import AdapterContract

CHECK_ADAPTER_ENV = "ARENA_ADAPTERS_CHECK_ADAPTER"


class TestAdapterContract(AdapterContract):
    """The contract, for the adapter named in the environment."""

    adapter = os.environ.get(CHECK_ADAPTER_ENV, "")
