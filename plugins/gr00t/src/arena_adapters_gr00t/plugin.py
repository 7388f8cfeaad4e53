"""Hook implementations of the ``gr00t`` plugin: the parts it registers and the ``gr00t`` adapter.

Parts:
    ``gr00t.zmq``        transport to Isaac-GR00T policy servers (ZeroMQ REQ + msgpack)
    ``gr00t.droid``      DROID observation/action translators (flat by default, as the DROID example)
    ``gr00t.generic``    config-driven translators for any embodiment (dict or YAML ``config``)
    ``gr00t.server``     reference server;  ``gr00t.probe``: ``arena-adapters ping gr00t``

The ``gr00t`` adapter composes ``gr00t.zmq`` with the DROID translators and executes 8 actions
per chunk, like the upstream DROID example. For another embodiment::

    load_policy("gr00t", endpoint="tcp://127.0.0.1:5555", embodiment="my_robot.yaml")
    # or, the same translators by name:
    load_policy("gr00t", endpoint="tcp://127.0.0.1:5555", observation_translator="gr00t.generic",
                action_translator="gr00t.generic", config="my_robot.yaml")
"""

from __future__ import annotations

from functools import partial
from typing import Any

from arena_adapters.examples import droid_observation
from arena_adapters.hookspecs import Register, hookimpl
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
from arena_adapters_gr00t import droid, protocol
from arena_adapters_gr00t.codec import ARRAY_ENCODINGS, NPY
from arena_adapters_gr00t.probe import PROBE_OPTIONS, probe_server
from arena_adapters_gr00t.served_expert import Gr00tReachExpert
from arena_adapters_gr00t.server import start_reference_server
from arena_adapters_gr00t.translators import Gr00tActions, Gr00tObservations
from arena_adapters_gr00t.transport import ARRAY_ENCODING_CHOICES, AUTO, Gr00tTransport

PROTOCOL = "gr00t"

TRANSPORT_OPTIONS: tuple[Option, ...] = (
    Option("endpoint", str, protocol.DEFAULT_ENDPOINT, "server address tcp://HOST:PORT (the port is required)"),
    Option("timeout", float, 30.0, "seconds one request may take in all", above=0),
    Option("api_token", str, None, "API token sent with every request", secret=True),
    Option("protocol_version", str, protocol.N16, "server generation: n1.6 (N1.6 and later) or n1.5",
           choices=protocol.PROTOCOL_VERSIONS),
    Option("array_encoding", str, AUTO, "how request arrays are sent: npy (__ndarray_class__, N1.6), nd "
           "(msgpack-numpy, N1.7-era servers) or auto (from what the server shows, remembered)",
           choices=ARRAY_ENCODING_CHOICES),
    *limit_options(),
    *RETRY_OPTIONS,
)

GENERIC_OPTIONS: tuple[Option, ...] = (
    Option("config", object, help="embodiment config: a dict or a YAML/JSON file path "
           "(see arena_adapters_gr00t.embodiment)"),
    Option("format", str, None, "override the config's observation format: flat or nested",
           choices=(None, *protocol.FORMATS)),
)

SERVER_OPTIONS: tuple[Option, ...] = (
    Option("api_token", str, None, "require this API token on every request", secret=True),
    Option("format", str, None, "flat (like --use-sim-policy-wrapper) or nested; default: flat for the "
           "built-in test policy, a given policy object as is", choices=(None, *protocol.FORMATS)),
    Option("protocol_version", str, protocol.N16, "serve like N1.6 (and later) or N1.5 servers",
           choices=protocol.PROTOCOL_VERSIONS),
    Option("strict", bool, True, "validate observations like upstream's strict Gr00tPolicy"),
    Option("array_encoding", str, NPY, "the server's era: npy (N1.6 __ndarray_class__ arrays) or nd "
           "(N1.7-era msgpack-numpy arrays and the __ModalityConfig__ marker)", choices=ARRAY_ENCODINGS),
    *server_limit_options(),
    Option("writable_arrays", bool, True, "give the policy arrays with their own writable memory, as np.load "
           "does; false: read-only views of the request, no copy (policies that never write their input)"),
    Option("fault_injector", object, None, "f(reply_bytes) -> ReplyFault | None, called before each reply "
           "(conformance and fault tests)"),
)


def _generic_observations(config: Any, format: str | None = None) -> Gr00tObservations:
    return Gr00tObservations(config, format=format)


def _generic_actions(config: Any, format: str | None = None) -> Gr00tActions:
    return Gr00tActions(config, format=format)


@hookimpl
def register_transports(register: Register[TransportRecord]) -> None:
    register(TransportRecord(
        name="gr00t.zmq",
        protocol=PROTOCOL,
        factory=Gr00tTransport,
        description="Isaac-GR00T policy server over ZeroMQ REQ/REP + msgpack (N1.6/N1.7, or N1.5)",
        options=TRANSPORT_OPTIONS,
        capabilities=frozenset({"batched", "reset", "metadata", DEADLINES}),
    ))


@hookimpl
def register_observation_translators(register: Register[ObservationTranslatorRecord]) -> None:
    register(ObservationTranslatorRecord(
        name="gr00t.droid",
        protocol=PROTOCOL,
        factory=droid.droid_observations,
        description="Isaac Lab Arena DROID cameras + joints -> GR00T OXE_DROID keys at 180x320",
        options=droid.OBSERVATION_OPTIONS,
    ))
    register(ObservationTranslatorRecord(
        name="gr00t.generic",
        protocol=PROTOCOL,
        factory=_generic_observations,
        description="config-driven (dict/YAML) cameras, state groups and language -> GR00T keys",
        options=GENERIC_OPTIONS,
    ))


@hookimpl
def register_action_translators(register: Register[ActionTranslatorRecord]) -> None:
    register(ActionTranslatorRecord(
        name="gr00t.droid",
        protocol=PROTOCOL,
        factory=droid.droid_actions,
        description="GR00T action.joint_position (B,32,7) + action.gripper_position (B,32,1) -> (B,32,8)",
        options=droid.ACTION_OPTIONS,
    ))
    register(ActionTranslatorRecord(
        name="gr00t.generic",
        protocol=PROTOCOL,
        factory=_generic_actions,
        description="config-driven GR00T action groups -> env action layout",
        options=GENERIC_OPTIONS,
    ))


@hookimpl
def register_adapters(register: Register[AdapterRecord]) -> None:
    register(AdapterRecord(
        name="gr00t",
        protocol=PROTOCOL,
        transport="gr00t.zmq",
        observation_translator="gr00t.droid",
        action_translator="gr00t.droid",
        description="Isaac-GR00T N1.6 policy servers (DROID by default; gr00t.generic for other robots)",
        defaults={"execute_steps": 8},
        reference_server="gr00t.server",
        probe="gr00t.probe",
        example_observation=partial(droid_observation, height=90, width=160),
    ))


@hookimpl
def register_reference_servers(register: Register[ReferenceServerRecord]) -> None:
    register(ReferenceServerRecord(
        name="gr00t.server",
        protocol=PROTOCOL,
        factory=start_reference_server,
        description="GR00T PolicyServer look-alike (REP socket) serving a Python policy or the DROID test policy",
        options=SERVER_OPTIONS,
    ))


@hookimpl
def register_probes(register: Register[ProbeRecord]) -> None:
    register(ProbeRecord(
        name="gr00t.probe",
        protocol=PROTOCOL,
        factory=probe_server,
        description="ping, modality config, one synthetic get_action, reply shapes, latency",
        options=PROBE_OPTIONS,
    ))


@hookimpl
def register_served_experts(register: Register[ServedExpertRecord]) -> None:
    register(ServedExpertRecord(
        name="gr00t.reach_expert",
        protocol=PROTOCOL,
        factory=Gr00tReachExpert,
        description="the reach expert as a GR00T DROID policy (32-step chunks, served flat)",
        adapter="gr00t",
        environment="reach",
        server_options={"format": protocol.FLAT, "writable_arrays": False},  # the expert only reads
        client_options={"execute_steps": 8},
    ))
