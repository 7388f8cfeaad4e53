"""The 'vlaeval' plugin: vla-evaluation-harness model servers (WebSocket + msgpack, one session per env).

Registers the transport ``vlaeval.ws``, the DROID translators ``vlaeval.droid`` /
``vlaeval.actions``, the reference server ``vlaeval.server``, the probe ``vlaeval.probe`` and the
adapter ``vlaeval`` that composes them. Built only on :mod:`arena_adapters.plugin`.
"""

from __future__ import annotations

from arena_adapters import plugin as ap
from arena_adapters_vlaeval.codec import IMAGE_FORMATS
from arena_adapters_vlaeval.probe import probe_server
from arena_adapters_vlaeval.server import start_server
from arena_adapters_vlaeval.translators import DEFAULT_IMAGE_SIZE, DROID_LAYOUT, Actions, Observations
from arena_adapters_vlaeval.transport import DEFAULT_PORT, VlaEvalTransport

PROTOCOL = "vlaeval"
IMAGE_FORMAT = ap.Option("image_format", str, "raw", "how images travel: raw, png (lossless) or jpeg (lossy)",
                         choices=IMAGE_FORMATS)


@ap.hookimpl
def register_transports(register: ap.Register[ap.TransportRecord]) -> None:
    register(ap.TransportRecord(
        name="vlaeval.ws", protocol=PROTOCOL, factory=VlaEvalTransport,
        description="vla-eval model servers: WebSocket + msgpack, HELLO handshake, one session per env",
        capabilities=frozenset({ap.DEADLINES}),
        options=(
            ap.Option("endpoint", str, f"ws://127.0.0.1:{DEFAULT_PORT}", "ws://HOST:PORT; comma-separate replicas"),
            ap.Option("timeout", float, 30.0, "seconds per request (connect, HELLO and every env's reply)", above=0),
            IMAGE_FORMAT,
            ap.Option("benchmark", str, "isaaclab-arena", "the benchmark name sent in HELLO"),
            ap.Option("max_concurrency", int, 16, "env requests in flight at once", minimum=1),
            *ap.limit_options(), *ap.RETRY_OPTIONS,
        )))


@ap.hookimpl
def register_observation_translators(register: ap.Register[ap.ObservationTranslatorRecord]) -> None:
    register(ap.ObservationTranslatorRecord(
        name="vlaeval.droid", protocol=PROTOCOL, factory=Observations,
        description="Isaac Lab DROID cameras, joints and gripper -> one vla-eval observation per env",
        options=(ap.Option("image_size", tuple, DEFAULT_IMAGE_SIZE, "camera size sent, HEIGHTxWIDTH (resize with pad)"),
                 ap.Option("benchmark_task", str, "isaaclab-arena", "task name sent in EPISODE_START"))))


@ap.hookimpl
def register_action_translators(register: ap.Register[ap.ActionTranslatorRecord]) -> None:
    register(ap.ActionTranslatorRecord(
        name="vlaeval.actions", protocol=PROTOCOL, factory=Actions,
        description="ACTION payloads 'actions' (D,) or (H, D) -> (k, H, D) chunks on the env device",
        options=(ap.Option("action_dim", int, DROID_LAYOUT.dim,
                           "action width the server sends (8: DROID joints + gripper)", minimum=1),)))


@ap.hookimpl
def register_reference_servers(register: ap.Register[ap.ReferenceServerRecord]) -> None:
    register(ap.ReferenceServerRecord(
        name="vlaeval.server", protocol=PROTOCOL, factory=start_server,
        description="a vla-eval model server with a built-in dummy model holding the observed joints",
        options=(
            ap.Option("port", int, DEFAULT_PORT, "port (0: a free one)", minimum=0),
            ap.Option("chunk_size", int, None, "serve chunks one action per observation (vla-eval's chunk_size)",
                      minimum=1),
            ap.Option("fault_injector", object, None, "tests: make replies hostile (see ap.ReplyFault)"),
            *ap.server_limit_options(),
        )))


@ap.hookimpl
def register_probes(register: ap.Register[ap.ProbeRecord]) -> None:
    register(ap.ProbeRecord(
        name="vlaeval.probe", protocol=PROTOCOL, factory=probe_server,
        description="HELLO (server name, action spec), one episode with a synthetic observation, latency",
        options=(ap.Option("repeats", int, 3, "extra inferences timed", minimum=0), IMAGE_FORMAT)))


@ap.hookimpl
def register_adapters(register: ap.Register[ap.AdapterRecord]) -> None:
    register(ap.AdapterRecord(
        name="vlaeval", protocol=PROTOCOL,
        description="vla-evaluation-harness model servers (CogACT, GR00T, pi0, OpenVLA-OFT, X-VLA, ...) over WebSocket",
        transport="vlaeval.ws", observation_translator="vlaeval.droid", action_translator="vlaeval.actions",
        reference_server="vlaeval.server", probe="vlaeval.probe",
        example_observation=ap.droid_observation, defaults={"execute_steps": 8}))
