"""The ``openpi`` plugin's hook implementations: parts, the adapter, reference server and probe."""

from __future__ import annotations

from typing import Any

from arena_adapters import hookimpl
from arena_adapters.examples import droid_observation as core_droid_observation
from arena_adapters.hookspecs import Register
from arena_adapters.options import Option
from arena_adapters.records import (
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    ProbeRecord,
    ReferenceServerRecord,
    ServedExpertRecord,
    TransportRecord,
)
from arena_adapters.transport import DEADLINES, RETRY_OPTIONS, limit_options, server_limit_options
from arena_adapters_openpi.actions import OpenpiActions
from arena_adapters_openpi.observations import EMBODIMENTS, STATE_WIRE_DTYPES, OpenpiObservations
from arena_adapters_openpi.probe import probe_server
from arena_adapters_openpi.served_expert import OpenPiReachExpert
from arena_adapters_openpi.server import start_server
from arena_adapters_openpi.transport import DEFAULT_ENDPOINT, DEFAULT_PORT, WebsocketTransport

PROTOCOL = "openpi"

TRANSPORT_OPTIONS = (
    Option("endpoint", str, DEFAULT_ENDPOINT, "ws://HOST:PORT (or wss://) of the openpi server; comma-separate "
           "replicas"),
    Option("timeout", float, 30.0, "seconds per inference request, resends included", above=0),
    Option("connect_timeout", float, 10.0, "seconds for connect + handshake + metadata frame", above=0),
    Option("api_key", str, None, "sent as 'Authorization: Api-Key <key>'", secret=True),
    Option("max_concurrency", int, 16, "env requests in flight at once (connection pool size)", minimum=1),
    *RETRY_OPTIONS,
    Option("keepalive_interval", float, 20.0,
           "seconds of silence from the server, while a reply is awaited, before a keepalive ping (0: none)",
           minimum=0),
    Option("keepalive_timeout", float, None, "seconds to wait for a pong (default: max(20, timeout))"),
    *limit_options(),
    Option("ca_file", str, None, "PEM file of the CA of a wss:// server's certificate (default: system store)"),
    Option("verify_tls", bool, True, "check a wss:// server's certificate (turn off only for testing)"),
)

OBSERVATION_OPTIONS = (
    Option("embodiment", str, "droid", "wire observation layout", choices=EMBODIMENTS),
    Option("paths", object, None, "observation paths by field, a map or 'field=path,field=a+b' (see README)"),
    Option("image_size", int, 224, "cameras are resized with padding to this square size (0: as is)",
           minimum=0),
    Option("state_dtype", str, "float64", "dtype of state vectors on the wire", choices=tuple(STATE_WIRE_DTYPES)),
)

ACTION_OPTIONS = (
    Option("action_dim", int, None, "use the first action_dim columns of each chunk (default: all)",
           minimum=1),
    Option("actions_key", str, "actions", "reply key of the action chunk"),
)

SERVER_OPTIONS = (
    Option("port", int, DEFAULT_PORT, "port to listen on (0: a free port)"),
    Option("metadata", object, None, "metadata frame sent on connect: a map or JSON text (default policy.metadata)"),
    Option("infer_in_thread", bool, False, "run inference in a thread pool instead of on the event loop"),
    Option("workers", int, 16, "inference threads with infer_in_thread", minimum=1),
    Option("api_key", str, None, "reject handshakes without 'Authorization: Api-Key <key>' (stock server: none)",
           secret=True),
    Option("action_horizon", int, 10, "built-in test policy: actions per chunk", minimum=1),
    Option("delay", float, 0.0, "built-in test policy: seconds of simulated inference", minimum=0),
    *server_limit_options(),
    Option("fault_injector", object, None, "called with each reply's bytes; its ReplyFault replaces the reply "
           "(tests, conformance kit)"),
)

PROBE_OPTIONS = (
    Option("embodiment", str, "droid", "layout of the synthetic observation", choices=EMBODIMENTS),
    Option("api_key", str, None, "sent as 'Authorization: Api-Key <key>'", secret=True),
    Option("prompt", str, "pick up the cup", "prompt of the synthetic observation"),
    Option("action_dim", int, None, "expected action size (default: the embodiment's 8/7/14)"),
    Option("repeats", int, 3, "extra inferences timed for the warm latency", minimum=0),
    Option("ca_file", str, None, "PEM file of the CA of a wss:// server's certificate (default: system store)"),
    Option("verify_tls", bool, True, "check a wss:// server's certificate (turn off only for testing)"),
)


def droid_observation(num_envs: int, device: Any = "cpu") -> dict[str, Any]:
    """The core's DROID example observation at the cameras' native 180x320 (resized to 224 by the
    translator, as in Isaac Lab Arena)."""
    return core_droid_observation(num_envs, device, height=180, width=320)


@hookimpl
def register_transports(register: Register[TransportRecord]) -> None:
    register(TransportRecord(
        name="openpi.websocket",
        protocol=PROTOCOL,
        factory=WebsocketTransport,
        description="openpi WebSocket + msgpack-numpy client; envs fanned out over a connection pool",
        options=TRANSPORT_OPTIONS,
        capabilities=frozenset({"metadata", "concurrent", DEADLINES}),
    ))


@hookimpl
def register_observation_translators(register: Register[ObservationTranslatorRecord]) -> None:
    register(ObservationTranslatorRecord(
        name="openpi.observations",
        protocol=PROTOCOL,
        factory=OpenpiObservations,
        description="Isaac Lab observations -> openpi DROID / LIBERO / ALOHA observations (224x224 resize-with-pad)",
        options=OBSERVATION_OPTIONS,
    ))


@hookimpl
def register_action_translators(register: Register[ActionTranslatorRecord]) -> None:
    register(ActionTranslatorRecord(
        name="openpi.actions",
        protocol=PROTOCOL,
        factory=OpenpiActions,
        description="openpi 'actions' (H, D) replies -> (k, H, action_dim) float32 on the env device",
        options=ACTION_OPTIONS,
    ))


@hookimpl
def register_adapters(register: Register[AdapterRecord]) -> None:
    register(AdapterRecord(
        name="openpi",
        protocol=PROTOCOL,
        transport="openpi.websocket",
        observation_translator="openpi.observations",
        action_translator="openpi.actions",
        description="openpi policy servers (pi0 / pi0-FAST / pi05) over WebSocket; DROID by default",
        defaults={"execute_steps": 8},
        reference_server="openpi.server",
        probe="openpi.probe",
        example_observation=droid_observation,
    ))


@hookimpl
def register_reference_servers(register: Register[ReferenceServerRecord]) -> None:
    register(ReferenceServerRecord(
        name="openpi.server",
        protocol=PROTOCOL,
        factory=start_server,
        description="openpi-compatible WebSocket policy server (metadata frame, /healthz, traceback + 1011)",
        options=SERVER_OPTIONS,
    ))


@hookimpl
def register_probes(register: Register[ProbeRecord]) -> None:
    register(ProbeRecord(
        name="openpi.probe",
        protocol=PROTOCOL,
        factory=probe_server,
        description="/healthz, metadata frame, one synthetic inference, reply shape, latencies",
        options=PROBE_OPTIONS,
    ))


@hookimpl
def register_served_experts(register: Register[ServedExpertRecord]) -> None:
    register(ServedExpertRecord(
        name="openpi.reach_expert",
        protocol=PROTOCOL,
        factory=OpenPiReachExpert,
        description="the reach expert as an openpi DROID policy (16-step chunks)",
        adapter="openpi",
        environment="reach",
        client_options={"execute_steps": 8},
    ))
