"""The core conformance kit, for both variants of the ``openvla`` adapter."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from arena_adapters.parts import RunningServer
from arena_adapters.plugins import PluginRegistry
from arena_adapters.policy import Policy
from arena_adapters.records import AdapterRecord, ProbeRecord, ReferenceServerRecord
from arena_adapters.testing.conformance import AdapterContract


class TestOftContract(AdapterContract):
    """OFT: action chunks of 8, so replay and partial resets behave as for the other adapters."""

    adapter = "openvla"
    options: ClassVar[dict[str, Any]] = {"variant": "oft"}

    def start_server(self, registry: PluginRegistry, record: AdapterRecord) -> RunningServer:
        assert record.reference_server
        server_record = registry.part(ReferenceServerRecord, record.reference_server)
        server: RunningServer = server_record.factory(policy=None, host="127.0.0.1", port=0, variant="oft")
        return server

    def test_probe_passes_against_the_reference_server(
        self, registry: PluginRegistry, record: AdapterRecord, server: RunningServer
    ) -> None:
        # The kit calls the probe without the adapter's options; an OFT server needs variant="oft".
        assert record.probe
        report = registry.part(ProbeRecord, record.probe).factory(endpoint=server.endpoint, timeout=5.0, variant="oft")
        assert report.ok, report.failure


class TestOpenVlaContract(AdapterContract):
    """OpenVLA: one action per reply, so every env is re-queried at every step."""

    adapter = "openvla"

    def test_partial_reset_queries_only_those_envs(self, policy: Policy, record: AdapterRecord) -> None:
        # The kit assumes chunks longer than one action; here every env is due at every step anyway.
        observation = self.make_observation(record, self.num_envs)
        policy.get_action(observation)
        sent = policy.stats.env_requests
        policy.reset(torch.tensor([self.num_envs - 1]))
        policy.get_action(observation)
        assert policy.stats.env_requests - sent == self.num_envs
