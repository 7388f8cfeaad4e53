"""The hooks a plugin implements to add parts and adapters to arena-adapters.

Quick start for a plugin author
-------------------------------
A plugin is a module registered under the entry-point group ``arena_adapters``; the entry-point
name is the name of the adapter it provides::

    # pyproject.toml
    [project.entry-points.arena_adapters]
    myrobot = "myrobot_adapters.plugin"

The module implements any of the hooks below with :data:`arena_adapters.hookimpl`. Each hook gets a
``register`` callable and calls it once per record. A plugin may add just one part; here a new
robot's translators reuse the GR00T transport::

    from arena_adapters import hookimpl
    from arena_adapters.records import (
        ActionTranslatorRecord, AdapterRecord, ObservationTranslatorRecord)

    @hookimpl
    def register_observation_translators(register):
        register(ObservationTranslatorRecord(
            name="myrobot.obs", protocol="gr00t", factory=MyRobotObservations))

    @hookimpl
    def register_action_translators(register):
        register(ActionTranslatorRecord(
            name="myrobot.actions", protocol="gr00t", factory=MyRobotActions))

    @hookimpl
    def register_adapters(register):
        register(AdapterRecord(
            name="myrobot", transport="gr00t.zmq", protocol="gr00t",
            observation_translator="myrobot.obs", action_translator="myrobot.actions"))

The hooks only register records: they run once when the plugin is loaded, never on the control
path. The objects the factories build are then called directly every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pluggy

from arena_adapters.records import (
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    ProbeRecord,
    ReferenceServerRecord,
    ServedExpertRecord,
    TransportRecord,
)

PROJECT_NAME = "arena_adapters"

RecordT = TypeVar("RecordT")

Register = Callable[[RecordT], None]
"""The type of a hook's ``register`` argument: ``Register[TransportRecord]``."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_observation_translators(
    register: Callable[[ObservationTranslatorRecord], None],
) -> None:
    """Register observation translators: env observations -> a protocol's wire request.

    :param register: call it with one :class:`~arena_adapters.records.ObservationTranslatorRecord`
        per translator. The record's ``factory(**options)`` returns an object with
        ``translate(observation, query) -> request`` (see
        :class:`~arena_adapters.parts.ObservationTranslator`).

    Called once, when the plugin is loaded.

    Example::

        @hookimpl
        def register_observation_translators(register):
            register(ObservationTranslatorRecord(
                name="gr00t.droid", protocol="gr00t", factory=DroidObservations,
                options=(Option("image_size", tuple, (180, 320), "camera size on the wire"),)))
    """


@hookspec
def register_action_translators(register: Callable[[ActionTranslatorRecord], None]) -> None:
    """Register action translators: a protocol's wire reply -> a ``(k, H, action_dim)`` tensor.

    :param register: call it with one :class:`~arena_adapters.records.ActionTranslatorRecord` per
        translator. The record's ``factory(**options)`` returns an object with
        ``translate(reply, query) -> torch.Tensor`` (see
        :class:`~arena_adapters.parts.ActionTranslator`).

    Called once, when the plugin is loaded.

    Example::

        @hookimpl
        def register_action_translators(register):
            register(ActionTranslatorRecord(
                name="gr00t.droid", protocol="gr00t", factory=DroidActions))
    """


@hookspec
def register_transports(register: Callable[[TransportRecord], None]) -> None:
    """Register inference transports: the client side of a policy server's wire protocol.

    :param register: call it with one :class:`~arena_adapters.records.TransportRecord` per
        transport. The record's ``factory(**options)`` returns an
        :class:`~arena_adapters.parts.InferenceTransport` (connect, health, metadata, infer, reset,
        close). It must not do I/O in the factory: the core connects lazily.

    Called once, when the plugin is loaded.

    Example::

        @hookimpl
        def register_transports(register):
            register(TransportRecord(
                name="gr00t.zmq", protocol="gr00t", factory=ZmqTransport,
                capabilities=frozenset({"batched", "reset"}),
                options=(Option("endpoint", str, "tcp://127.0.0.1:5555"),
                         Option("timeout", float, 30.0))))
    """


@hookspec
def register_adapters(register: Callable[[AdapterRecord], None]) -> None:
    """Register adapters: named compositions of a transport and two translators.

    :param register: call it with one :class:`~arena_adapters.records.AdapterRecord` per adapter.
        Its part names may refer to parts of other plugins; those plugins are loaded on demand
        (the namespace of ``"gr00t.zmq"`` is the plugin ``gr00t``).

    Called once, when the plugin is loaded. ``load_policy(name)`` builds the three parts with the
    user's options over the record's ``defaults``.

    Example::

        @hookimpl
        def register_adapters(register):
            register(AdapterRecord(
                name="gr00t", protocol="gr00t", transport="gr00t.zmq",
                observation_translator="gr00t.droid", action_translator="gr00t.droid",
                defaults={"execute_steps": 8}, reference_server="gr00t.server",
                probe="gr00t.probe"))
    """


@hookspec
def register_reference_servers(register: Callable[[ReferenceServerRecord], None]) -> None:
    """Register reference servers that speak a protocol exactly as the upstream server does.

    :param register: call it with one :class:`~arena_adapters.records.ReferenceServerRecord` per
        server. ``factory(policy=None, host="127.0.0.1", port=0, **options)`` starts the server
        (port 0 picks a free port) and returns a :class:`~arena_adapters.parts.RunningServer`.

    Used by ``arena-adapters serve``, the demo, tests and the conformance kit.

    Example::

        @hookimpl
        def register_reference_servers(register):
            register(ReferenceServerRecord(
                name="gr00t.server", protocol="gr00t", factory=start_reference_server))
    """


@hookspec
def register_probes(register: Callable[[ProbeRecord], None]) -> None:
    """Register probes that check a live server end to end (``arena-adapters ping``).

    :param register: call it with one :class:`~arena_adapters.records.ProbeRecord` per probe.
        ``factory(endpoint=..., timeout=..., **options)`` returns a
        :class:`~arena_adapters.parts.ProbeReport`; server faults are reported, not raised.

    Called once, when the plugin is loaded. Used by ``arena-adapters ping`` and the conformance kit.

    Example::

        @hookimpl
        def register_probes(register):
            register(ProbeRecord(name="gr00t.probe", protocol="gr00t", factory=probe_server))
    """


@hookspec
def register_served_experts(register: Callable[[ServedExpertRecord], None]) -> None:
    """Register how an adapter serves the scripted expert of a built-in environment (the demo).

    :param register: call it with one :class:`~arena_adapters.records.ServedExpertRecord` per
        adapter and environment. ``factory(**options)`` returns the policy object that the
        adapter's reference server serves with the record's ``server_options``: it turns the
        protocol's observation into the expert's inputs (external camera images ``(B, H, W, 3)``
        uint8, joints ``(B, 7)``, gripper ``(B, 1)``) and the expert's chunk ``(B, H, 8)`` into the
        protocol's reply. ``client_options`` are the adapter options that fit it.

    The core's environments and experts know no protocol: this hook is how ``arena-adapters demo
    --adapter NAME`` serves the expert through any adapter, first-party or not. Called once, when
    the plugin is loaded.

    Example::

        from arena_adapters.envs.reach_expert import ReachExpert

        class MyRobotReachExpert:                      # the policy interface of the gr00t server
            def __init__(self):
                self.expert = ReachExpert(horizon=16)

            def get_action(self, observation, options=None):
                chunk = self.expert.plan(observation["video.exterior_image_1_left"][:, -1],
                                         observation["state.joint_position"][:, -1])
                return {"action.joint_position": chunk[..., :7],
                        "action.gripper_position": chunk[..., 7:]}, {}

        @hookimpl
        def register_served_experts(register):
            register(ServedExpertRecord(
                name="myrobot.reach_expert", protocol="gr00t", adapter="myrobot",
                environment="reach", factory=MyRobotReachExpert,
                client_options={"execute_steps": 8}))
    """
