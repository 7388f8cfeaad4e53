"""Contract tests every adapter must pass, for first-party and third-party plugins alike.

Point the kit at a plugin by subclassing :class:`AdapterContract` in a test module::

    from arena_adapters.testing.conformance import AdapterContract

    class TestMyAdapterContract(AdapterContract):
        adapter = "myadapter"                 # the entry-point name
        options = {"embodiment": "droid"}     # extra load_policy options, if any

or run ``arena-adapters check NAME``. The kit starts the adapter's reference server on loopback
(port 0), loads the adapter through its entry point with a strict registry, and drives it with the
adapter record's ``example_observation``. An adapter without a reference server whose transport
calls a Python policy (an option named ``policy``, as the built-in ``local`` adapter's) is checked
against :class:`~arena_adapters.testing.in_process.InProcessServer` and its example observation.
Override :meth:`AdapterContract.start_server` for any other adapter without a reference server, and
:meth:`AdapterContract.make_observation` for one without an example observation.

Beyond the happy path, the contract holds the adapter to the framework's promises: the reference
server is started with a ``fault_injector`` (see :mod:`arena_adapters.transport.serving`) that turns
it silent, trickling or hostile on demand, and the clauses check that every failure is a typed error
within the call's deadline, that hostile replies give only :class:`~arena_adapters.errors.ProtocolError`
(or :class:`~arena_adapters.errors.ActionError`) with bounded memory, and that ``close()`` with a
request in flight is prompt and leaks no thread or socket.
"""

from __future__ import annotations

import os
import random
import threading
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import torch

from arena_adapters.errors import (
    ActionError,
    AdapterError,
    ObservationError,
    ProtocolError,
    TransportError,
    TransportTimeout,
)
from arena_adapters.options import Option
from arena_adapters.parts import Observation, ProbeReport, RunningServer
from arena_adapters.plugins import PluginRegistry
from arena_adapters.policy import PART_ROLES, Policy, load_policy
from arena_adapters.records import AdapterRecord, ProbeRecord, ReferenceServerRecord, TransportRecord
from arena_adapters.testing import in_process
from arena_adapters.transport.serving import ReplyFault

IN_PROCESS_OPTION = "policy"
"""The transport option that marks an adapter served in process (its value: the policy's ``module:attr``)."""

DEADLINE_SLACK_S = 1.0
"""How much longer than its timeout a failing call may take (thread hand-offs, a loaded CI machine)."""

HOSTILE_MEMORY_BYTES = 64 * 2**20
"""The most a hostile reply may make the client allocate (traced by tracemalloc)."""


class FaultSwitch:
    """The ``fault_injector`` the kit starts reference servers with: passes replies through until
    :attr:`fault` is set (or :attr:`faults` holds a queue of them), records the last real reply, and
    holds each reply back :attr:`delay_s` seconds (the server calls it before replying)."""

    def __init__(self) -> None:
        self.fault: ReplyFault | None = None
        self.faults: list[ReplyFault] = []
        self.delay_s = 0.0
        self.last_reply = b""

    def __call__(self, reply: bytes) -> ReplyFault | None:
        self.last_reply = reply
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.faults:
            return self.faults.pop(0)
        return self.fault


def hostile_variants(reply: bytes, count: int, seed: int = 0) -> list[bytes]:
    """Mutations of a real reply: random bytes, truncations, bit flips, byte runs overwritten with
    0xff (huge declared sizes in most length-prefixed formats) and duplicated runs."""
    rng = random.Random(seed)
    variants = [b"", bytes(rng.randrange(256) for _ in range(64)), reply[: len(reply) // 2], reply[:1]]
    while len(variants) < count and reply:
        data = bytearray(reply)
        position = rng.randrange(len(data))
        kind = rng.randrange(3)
        if kind == 0:
            data[position] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[position:position + 4] = b"\xff\xff\xff\x7f"
        else:
            data[position:position] = data[position:position + rng.randrange(1, 32)]
        variants.append(bytes(data))
    return variants[:count]


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: sockets are not counted
        return 0


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
    optional_observation_keys: ClassVar[frozenset[str]] = frozenset()
    """Leaf paths of the example observation the adapter may do without (all others must be required)."""
    hostile_replies: ClassVar[int] = 24
    """How many mutations of a real reply the hostile-reply clause sends."""

    # ------------------------------------------------------------------ overridable pieces

    def start_server(
        self, registry: PluginRegistry, record: AdapterRecord, faults: FaultSwitch | None = None
    ) -> RunningServer:
        """Start the adapter's reference server on a free loopback port (with ``faults`` as its
        ``fault_injector`` when given), or in process (see above)."""
        if self._served_in_process(registry, record):
            return in_process.InProcessServer(fault_injector=faults)
        if not record.reference_server:
            pytest.skip(f"adapter {record.name!r} has no reference server (see test_record_declares_what_check_needs)")
        server_record = registry.part(ReferenceServerRecord, record.reference_server)
        options = self._declared_options(server_record.options)
        if faults is not None:
            if not any(option.name == "fault_injector" for option in server_record.options):
                pytest.fail(
                    f"reference server {server_record.name!r} takes no 'fault_injector' option: add it "
                    "(see arena_adapters.transport.serving.ReplyFault)"
                )
            options["fault_injector"] = faults
        server: RunningServer = server_record.factory(policy=None, host="127.0.0.1", **{**options, "port": 0})
        return server

    def make_observation(self, record: AdapterRecord, num_envs: int, device: str = "cpu") -> Observation:
        """A valid observation for the adapter's translators."""
        if record.example_observation is None and not record.reference_server:
            return in_process.example_observation(num_envs, device)  # what the in-process policy reads
        if record.example_observation is None:
            pytest.skip(f"adapter {record.name!r} has no example_observation "
                        "(see test_record_declares_what_check_needs)")
        observation: Observation = record.example_observation(num_envs, device)
        return observation

    def load(self, registry: PluginRegistry, endpoint: str, **extra: Any) -> Policy:
        """Load the adapter against ``endpoint``."""
        record = registry.adapter(self.adapter)
        option = IN_PROCESS_OPTION if self._served_in_process(registry, record) else self.endpoint_option
        options = {option: endpoint, "execute_steps": self.execute_steps, **self.options, **extra}
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
    def faults(self) -> FaultSwitch:
        return FaultSwitch()

    @pytest.fixture
    def faulty_server(
        self, registry: PluginRegistry, record: AdapterRecord, faults: FaultSwitch
    ) -> Iterator[RunningServer]:
        server = self.start_server(registry, record, faults)
        try:
            yield server
        finally:
            faults.fault, faults.faults, faults.delay_s = None, [], 0.0
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

    def test_record_declares_what_check_needs(self, registry: PluginRegistry, record: AdapterRecord) -> None:
        missing = []
        if not record.description:
            missing.append("description='one line for arena-adapters list'")
        if self._served_in_process(registry, record):  # the kit serves its in-process policy and example
            assert not missing, f"add to AdapterRecord {record.name!r}: " + "; ".join(missing)
            return
        if record.example_observation is None:
            missing.append("example_observation=fn(num_envs, device) -> a valid observation "
                           "(arena_adapters.plugin.droid_observation for the DROID layout)")
        if not record.reference_server:
            missing.append("reference_server='<plugin>.server' (a ReferenceServerRecord; reuse another plugin's "
                           "when you reuse its transport)")
        if not record.probe:
            missing.append("probe='<plugin>.probe' (a ProbeRecord, built on arena_adapters.plugin.ProbeRun)")
        assert not missing, f"add to AdapterRecord {record.name!r}: " + "; ".join(missing)

    def test_declared_action_layout_matches_the_actions(self, policy: Policy, record: AdapterRecord) -> None:
        actions = policy.get_action(self.make_observation(record, self.num_envs))
        layout = policy.action_layout
        if layout is None:
            pytest.skip("the action translator declares no action_layout")
        assert actions.shape[1] == layout.dim, (
            f"the action translator declares {layout.describe()}, but the actions are {actions.shape[1]} wide"
        )

    def test_records_resolve_and_agree_on_protocol(self, registry: PluginRegistry, record: AdapterRecord) -> None:
        parts = [registry.part(kind, getattr(record, role)) for role, kind in PART_ROLES.items()]
        protocols = {part.protocol for part in parts} - {"*"}
        assert len(protocols) == 1, f"parts speak different protocols: {protocols}"
        for part in parts:
            assert part.description, f"{part.kind} {part.name!r} has no description"

    def test_loading_does_no_io(self, registry: PluginRegistry, record: AdapterRecord, faults: FaultSwitch) -> None:
        server = self.start_server(registry, record, faults)
        try:
            policy = self.load(registry, server.endpoint)
            time.sleep(0.2)
            policy.close()
        finally:
            server.stop()
        assert faults.last_reply == b"", "loading the adapter (before any get_action) talked to the server"

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

    def test_prefetch_queries_in_the_background_while_replay_continues(
        self, registry: PluginRegistry, record: AdapterRecord, faulty_server: RunningServer, faults: FaultSwitch
    ) -> None:
        observation = self.make_observation(record, self.num_envs)
        prefetch = max(1, self.execute_steps - 1)
        policy = self.load(registry, faulty_server.endpoint, prefetch_steps=prefetch, **{self.timeout_option: 10.0})
        try:
            policy.get_action(observation)
            assert policy.scheduler is not None
            if policy.scheduler.horizon <= prefetch:
                pytest.skip("chunks too short to fetch ahead")
            delay = 0.6
            faults.delay_s = delay  # every reply now takes this long
            queries = policy.stats.queries
            issuing_step_s = None
            for _ in range(2 * self.execute_steps):
                started = time.monotonic()
                policy.get_action(observation)
                if policy.stats.queries > queries:
                    issuing_step_s = time.monotonic() - started
                    break
            assert issuing_step_s is not None, "no request was made ahead of time"
            assert issuing_step_s < delay / 2, (
                f"the step that sent a prefetch request took {issuing_step_s:.2f} s with a server answering in "
                f"{delay} s: the request was not made in the background"
            )
            faults.delay_s = 0.0
            for _ in range(2 * self.execute_steps):
                assert policy.get_action(observation).shape[0] == self.num_envs
        finally:
            policy.close()

    def test_health_and_metadata(self, policy: Policy) -> None:
        policy.connect()
        assert policy.transport.health().ok
        assert isinstance(policy.transport.metadata(), Mapping)

    def test_every_missing_observation_key_is_a_clear_error(self, policy: Policy, record: AdapterRecord) -> None:
        observation = self.make_observation(record, self.num_envs)
        policy.get_action(observation)  # a running policy, then observations that lack one key each
        accepted = []
        for path in _leaf_paths(observation):
            if path in self.optional_observation_keys:
                continue
            policy.reset()
            try:
                policy.get_action(_without(observation, path))
            except ObservationError as error:
                assert path.rsplit(".", 1)[-1] in str(error), f"error for missing {path!r} does not name it: {error}"
            else:
                accepted.append(path)
        assert not accepted, (
            f"observations without {accepted} were accepted; refuse them, or list them in optional_observation_keys"
        )

    def test_dead_server_is_a_transport_error_within_the_timeout(
        self, registry: PluginRegistry, record: AdapterRecord
    ) -> None:
        timeout = 1.0
        policy = self.load(registry, self._dead_endpoint(registry), **{self.timeout_option: timeout})
        started = time.monotonic()
        with pytest.raises(TransportError):
            policy.get_action(self.make_observation(record, self.num_envs))
        assert time.monotonic() - started < timeout + DEADLINE_SLACK_S
        policy.close()

    @pytest.mark.parametrize("fault", ["silence", "trickle"])
    def test_a_silent_or_trickling_server_is_a_timeout_within_the_deadline(
        self, registry: PluginRegistry, record: AdapterRecord, faulty_server: RunningServer, faults: FaultSwitch,
        fault: str,
    ) -> None:
        observation = self.make_observation(record, self.num_envs)
        timeout = 1.0
        policy = self.load(registry, faulty_server.endpoint, **{self.timeout_option: timeout})
        try:
            policy.connect()
            faults.fault = ReplyFault("silence") if fault == "silence" else ReplyFault(
                "trickle", b"\x00" * 64, interval_s=0.25)
            started = time.monotonic()
            with pytest.raises(TransportTimeout):
                policy.get_action(observation)
            elapsed = time.monotonic() - started
            assert elapsed < timeout + DEADLINE_SLACK_S, f"a {fault} server held get_action for {elapsed:.2f} s"
        finally:
            policy.close()

    def test_hostile_replies_are_protocol_errors_with_bounded_memory(
        self, registry: PluginRegistry, record: AdapterRecord, faulty_server: RunningServer, faults: FaultSwitch
    ) -> None:
        if self._served_in_process(registry, record):
            pytest.skip("an in-process policy has no wire replies to corrupt")
        observation = self.make_observation(record, self.num_envs)
        policy = self.load(registry, faulty_server.endpoint, execute_steps=1, **{self.timeout_option: 5.0})
        try:
            policy.get_action(observation)
            real = faults.last_reply
            assert real, "the reference server did not pass its replies to fault_injector"
            outcomes: dict[str, int] = {}
            tracemalloc.start()
            try:
                for data in hostile_variants(real, self.hostile_replies):
                    faults.faults = [ReplyFault("replace", data)]
                    try:
                        policy.get_action(observation)
                        outcome = "accepted"
                    except (ProtocolError, ActionError) as error:
                        outcome = "ProtocolError" if isinstance(error, ProtocolError) else "ActionError"
                    except AdapterError as error:
                        pytest.fail(f"a hostile reply gave {type(error).__name__}, not ProtocolError: {error}")
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < HOSTILE_MEMORY_BYTES, f"hostile replies made the client allocate {peak:,} bytes"
            assert outcomes.get("ProtocolError", 0) > 0, f"no hostile reply was refused: {outcomes}"
            faults.faults = []
            assert policy.get_action(observation).shape[0] == self.num_envs, "no recovery after hostile replies"
        finally:
            policy.close()

    def test_close_with_a_request_in_flight_is_prompt_final_and_leaks_nothing(
        self, registry: PluginRegistry, record: AdapterRecord, faulty_server: RunningServer, faults: FaultSwitch
    ) -> None:
        observation = self.make_observation(record, self.num_envs)
        threads, fds = threading.active_count(), _open_fds()
        policy = self.load(registry, faulty_server.endpoint, **{self.timeout_option: 30.0})
        policy.connect()
        faults.fault = ReplyFault("silence")
        outcome: dict[str, Any] = {}

        def in_flight() -> None:
            try:
                policy.get_action(observation)
            except AdapterError as error:
                outcome["error"] = error
            outcome["ended"] = time.monotonic()

        caller = threading.Thread(target=in_flight, daemon=True)
        caller.start()
        time.sleep(0.5)
        closing = time.monotonic()
        policy.close()
        assert time.monotonic() - closing < 1.0, "close() waited for the request in flight"
        caller.join(2.0)
        assert not caller.is_alive(), "the request in flight did not end when the policy closed"
        assert isinstance(outcome.get("error"), TransportError), f"the request in flight ended with {outcome}"
        assert outcome["ended"] - closing < 1.0
        policy.close()
        with pytest.raises(AdapterError):
            policy.get_action(observation)
        faults.fault = None
        deadline = time.monotonic() + 3.0
        while (threading.active_count() > threads or _open_fds() > fds) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads, "threads left running after close()"
        assert _open_fds() <= fds, "sockets left open after close()"

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

    def _served_in_process(self, registry: PluginRegistry, record: AdapterRecord) -> bool:
        """No reference server, and a transport that calls a Python policy given as an option."""
        if record.reference_server:
            return False
        transport = registry.part(TransportRecord, self.options.get("transport", record.transport))
        return any(option.name == IN_PROCESS_OPTION for option in transport.options)

    def _dead_endpoint(self, registry: PluginRegistry) -> str:
        """The endpoint of a reference server that was started and stopped: nobody listens there."""
        server = self.start_server(registry, registry.adapter(self.adapter))
        endpoint = server.endpoint
        server.stop()
        return endpoint
