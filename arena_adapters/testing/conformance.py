"""Contract tests every adapter must pass, for first-party and third-party plugins alike.

Point the kit at a plugin by subclassing :class:`AdapterContract` in a test module::

    from arena_adapters.testing.conformance import AdapterContract

    class TestMyAdapterContract(AdapterContract):
        adapter = "myadapter"                 # the entry-point name
        options = {"embodiment": "droid"}     # extra load_policy options, if any

or run ``arena-adapters check NAME``. The kit starts the adapter's reference server on loopback
(port 0), loads the adapter through its entry point with a strict registry, and drives it with the
adapter record's ``example_observation``. Override :meth:`AdapterContract.start_server` for an adapter
without a reference server, and :meth:`AdapterContract.make_observation` for one without an example
observation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import torch

from arena_adapters.errors import ObservationError, TransportError
from arena_adapters.options import Option
from arena_adapters.parts import Observation, ProbeReport, RunningServer
from arena_adapters.plugins import PluginRegistry
from arena_adapters.policy import PART_ROLES, Policy, load_policy
from arena_adapters.records import AdapterRecord, ProbeRecord, ReferenceServerRecord


def _leaf_paths(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths.extend(_leaf_paths(value, path) if isinstance(value, Mapping) else [path])
    return paths


def _without(node: Mapping[str, Any], path: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    copy = dict(node)
    if rest:
        copy[head] = _without(node[head], rest)
    else:
        del copy[head]
    return copy


class AdapterContract:
    """The contract. Subclass it and set :attr:`adapter`; every ``test_*`` method is one clause."""

    adapter: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    num_envs: ClassVar[int] = 4
    execute_steps: ClassVar[int] = 3
    timeout_option: ClassVar[str] = "timeout"
    endpoint_option: ClassVar[str] = "endpoint"

    # ------------------------------------------------------------------ overridable pieces

    def start_server(self, registry: PluginRegistry, record: AdapterRecord) -> RunningServer:
        """Start the adapter's reference server on a free loopback port."""
        if not record.reference_server:
            pytest.fail(f"adapter {record.name!r} has no reference server: override start_server()")
        server_record = registry.part(ReferenceServerRecord, record.reference_server)
        options = self._declared_options(server_record.options)
        server: RunningServer = server_record.factory(policy=None, host="127.0.0.1", **{**options, "port": 0})
        return server

    def make_observation(self, record: AdapterRecord, num_envs: int, device: str = "cpu") -> Observation:
        """A valid observation for the adapter's translators."""
        if record.example_observation is None:
            pytest.fail(f"adapter {record.name!r} has no example_observation: override make_observation()")
        observation: Observation = record.example_observation(num_envs, device)
        return observation

    def load(self, registry: PluginRegistry, endpoint: str, **extra: Any) -> Policy:
        """Load the adapter against ``endpoint``."""
        options = {self.endpoint_option: endpoint, "execute_steps": self.execute_steps, **self.options, **extra}
        return load_policy(self.adapter, registry=registry, **options)

    # ---------------------------------------------------------------------------- fixtures

    @pytest.fixture
    def registry(self) -> PluginRegistry:
        return PluginRegistry(strict=True)

    @pytest.fixture
    def record(self, registry: PluginRegistry) -> AdapterRecord:
        return registry.adapter(self.adapter)

    @pytest.fixture
    def server(self, registry: PluginRegistry, record: AdapterRecord) -> Iterator[RunningServer]:
        server = self.start_server(registry, record)
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def policy(self, registry: PluginRegistry, server: RunningServer) -> Iterator[Policy]:
        policy = self.load(registry, server.endpoint)
        try:
            yield policy
        finally:
            policy.close()

    # ------------------------------------------------------------------------------ clauses

    def test_listed_from_entry_points(self, registry: PluginRegistry) -> None:
        assert self.adapter in registry.available_adapters()
        assert registry.plugins()[self.adapter].distribution

    def test_records_resolve_and_agree_on_protocol(self, registry: PluginRegistry, record: AdapterRecord) -> None:
        parts = [registry.part(kind, getattr(record, role)) for role, kind in PART_ROLES.items()]
        protocols = {part.protocol for part in parts} - {"*"}
        assert len(protocols) == 1, f"parts speak different protocols: {protocols}"
        for part in parts:
            assert part.description, f"{part.kind} {part.name!r} has no description"

    def test_loading_does_no_io(self, registry: PluginRegistry) -> None:
        policy = self.load(registry, self._dead_endpoint(registry))
        policy.close()

    def test_actions_have_env_shape_dtype_and_device(self, policy: Policy, record: AdapterRecord) -> None:
        observation = self.make_observation(record, self.num_envs)
        actions = policy.get_action(observation)
        assert actions.ndim == 2 and actions.shape[0] == self.num_envs
        assert actions.is_floating_point() and actions.device == torch.device("cpu")
        assert torch.isfinite(actions).all()

    def test_replay_steps_do_not_query(self, policy: Policy, record: AdapterRecord) -> None:
        observation = self.make_observation(record, self.num_envs)
        policy.get_action(observation)
        queries = policy.stats.queries
        assert policy.scheduler is not None
        replay_steps = int(policy.scheduler.remaining().min())
        for _ in range(replay_steps):
            policy.get_action(observation)
        assert policy.stats.queries == queries

    def test_partial_reset_queries_only_the_due_envs(self, policy: Policy, record: AdapterRecord) -> None:
        observation = self.make_observation(record, self.num_envs)
        policy.get_action(observation)
        sent = policy.stats.env_requests
        policy.reset(torch.tensor([self.num_envs - 1]))
        assert policy.scheduler is not None
        due = policy.scheduler.due_envs().tolist()
        policy.get_action(observation)
        assert self.num_envs - 1 in due
        assert policy.stats.env_requests - sent == len(due)
        if policy.scheduler.horizon > 1:  # chunks of one action re-query every env every step
            assert due == [self.num_envs - 1]

    def test_prefetch_keeps_chunks_coming(
        self, registry: PluginRegistry, record: AdapterRecord, server: RunningServer
    ) -> None:
        policy = self.load(registry, server.endpoint, prefetch_steps=1)
        try:
            observation = self.make_observation(record, self.num_envs)
            policy.get_action(observation)
            assert policy.scheduler is not None
            if policy.scheduler.horizon <= 1:
                pytest.skip("one action per reply: nothing to fetch ahead")
            for _ in range(3 * self.execute_steps):
                assert policy.get_action(observation).shape[0] == self.num_envs
            assert policy.stats.queries >= 3
        finally:
            policy.close()

    def test_health_and_metadata(self, policy: Policy) -> None:
        policy.connect()
        assert policy.transport.health().ok
        assert isinstance(policy.transport.metadata(), Mapping)

    def test_missing_observation_keys_are_clear_errors(self, policy: Policy, record: AdapterRecord) -> None:
        observation = self.make_observation(record, self.num_envs)
        refused = 0
        for path in _leaf_paths(observation):
            policy.reset()
            try:
                policy.get_action(_without(observation, path))
            except ObservationError as error:
                assert path.rsplit(".", 1)[-1] in str(error), f"error for missing {path!r} does not name it: {error}"
                refused += 1
        assert refused, "removing any single observation key was accepted"

    def test_dead_server_is_a_transport_error_within_the_timeout(
        self, registry: PluginRegistry, record: AdapterRecord
    ) -> None:
        timeout = 1.0
        policy = self.load(registry, self._dead_endpoint(registry), **{self.timeout_option: timeout})
        started = time.monotonic()
        with pytest.raises(TransportError):
            policy.get_action(self.make_observation(record, self.num_envs))
        assert time.monotonic() - started < timeout + 2.0
        policy.close()

    def test_close_is_idempotent(self, policy: Policy, record: AdapterRecord) -> None:
        policy.get_action(self.make_observation(record, self.num_envs))
        policy.close()
        policy.close()

    def test_probe_passes_against_the_reference_server(
        self, registry: PluginRegistry, record: AdapterRecord, server: RunningServer
    ) -> None:
        if not record.probe:
            pytest.skip("adapter has no probe")
        probe = registry.part(ProbeRecord, record.probe)
        options = self._declared_options(probe.options)
        report: ProbeReport = probe.factory(endpoint=server.endpoint, timeout=5.0, **options)
        assert report.ok, report.failure

    def test_probe_reports_a_dead_server_without_raising(self, registry: PluginRegistry, record: AdapterRecord) -> None:
        if not record.probe:
            pytest.skip("adapter has no probe")
        probe = registry.part(ProbeRecord, record.probe)
        options = self._declared_options(probe.options)
        report: ProbeReport = probe.factory(endpoint=self._dead_endpoint(registry), timeout=1.0, **options)
        assert not report.ok and report.failure

    # ----------------------------------------------------------------------------- helpers

    def _declared_options(self, declared: tuple[Option, ...]) -> dict[str, Any]:
        """The entries of :attr:`options` that a server or probe record declares (e.g. a variant)."""
        names = {option.name for option in declared}
        return {key: value for key, value in self.options.items() if key in names}

    def _dead_endpoint(self, registry: PluginRegistry) -> str:
        """The endpoint of a reference server that was started and stopped: nobody listens there."""
        server = self.start_server(registry, registry.adapter(self.adapter))
        endpoint = server.endpoint
        server.stop()
        return endpoint
