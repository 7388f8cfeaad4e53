"""Everything a plugin author needs, in one import.

Quick start::

    # myrobot_adapters/plugin.py, registered in pyproject.toml as
    #   [project.entry-points.arena_adapters]
    #   myrobot = "myrobot_adapters.plugin"
    from arena_adapters import plugin as ap

    class MyRobotObservations:
        def translate(self, observation: ap.Observation, query: ap.Query) -> dict:
            joints = ap.lookup(observation, "policy.joint_pos")
            ap.require_tensor(joints, "policy.joint_pos", shape=("num_envs", 7))
            return {"state.joints": ap.select_rows(joints, query).cpu().numpy()}

    @ap.hookimpl
    def register_observation_translators(register: ap.Register[ap.ObservationTranslatorRecord]) -> None:
        register(ap.ObservationTranslatorRecord(
            name="myrobot.obs", protocol="gr00t", factory=MyRobotObservations,
            description="my robot's cameras and joints -> GR00T keys"))

What is here:

- the hook marker :data:`hookimpl` and the record classes each hook registers (records may be
  subclassed to carry more fields);
- the part protocols (:class:`ObservationTranslator`, :class:`ActionTranslator`,
  :class:`InferenceTransport`, :class:`ReadsServerMetadata` for ``on_connect``) and the values they
  exchange (:class:`Query`, :class:`Health`, :class:`ProbeReport`);
- :class:`ActionLayout` for declaring what the actions mean (checked against the env's before the
  first step);
- :class:`Option` for declaring a part's options (``secret=``, ``parse=``);
- observation helpers (:func:`lookup`, :func:`require_tensor`, :func:`select_rows`, ...) that raise
  :class:`ObservationError` naming the key, the expected shape and what arrived;
- the errors;
- the transport kit (:class:`ClientTransport`, :class:`Connection`, :class:`Deadline`,
  :class:`DecodeLimits`, ...) that keeps the framework's promises for a new protocol, and the
  reference-server helpers (:func:`start_failure`, :class:`ReplyFault`);
- probes (:class:`ProbeRun`) and example observations (:func:`droid_observation`);
- the conformance kit lives in :mod:`arena_adapters.testing.conformance` (it needs pytest).
"""

from __future__ import annotations

from arena_adapters.errors import (
    ActionError,
    AdapterError,
    ConfigError,
    ObservationError,
    PluginError,
    ProtocolError,
    ServerError,
    TransportError,
    TransportTimeout,
    UnknownAdapterError,
)
from arena_adapters.examples import droid_observation, ramp_images
from arena_adapters.hookspecs import Register, hookimpl
from arena_adapters.imaging import resize_with_pad
from arena_adapters.layouts import ActionLayout, ControlMode, Gripper, check_layouts
from arena_adapters.observations import (
    batch_size_and_device,
    describe,
    lookup,
    require_batch,
    require_tensor,
    select_rows,
)
from arena_adapters.options import Option
from arena_adapters.parts import (
    ActionTranslator,
    EnvIds,
    Health,
    InferenceTransport,
    Observation,
    ObservationTranslator,
    ProbeReport,
    ProbeStep,
    Query,
    ReadsServerMetadata,
    RunningServer,
)
from arena_adapters.probing import ProbeRun, StepFailed
from arena_adapters.records import (
    ANY_PROTOCOL,
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    PartRecord,
    ProbeRecord,
    Record,
    ReferenceServerRecord,
    TransportRecord,
)
from arena_adapters.transport import (
    BIND_ERRORS,
    DEADLINES,
    RETRY_OPTIONS,
    ClientTransport,
    Connection,
    ConnectionPool,
    DaemonPool,
    Deadline,
    DecodeLimits,
    Endpoint,
    FaultInjector,
    PendingReplies,
    ReplyFault,
    RetryPolicy,
    SplitConnection,
    fan_out,
    limit_options,
    parse_endpoint,
    server_limit_options,
    start_failure,
    wait_for,
    wait_ready,
)

__all__ = [
    "ANY_PROTOCOL",
    "BIND_ERRORS",
    "DEADLINES",
    "RETRY_OPTIONS",
    "ActionError",
    "ActionLayout",
    "ActionTranslator",
    "ActionTranslatorRecord",
    "AdapterError",
    "AdapterRecord",
    "ClientTransport",
    "ConfigError",
    "Connection",
    "ConnectionPool",
    "ControlMode",
    "DaemonPool",
    "Deadline",
    "DecodeLimits",
    "Endpoint",
    "EnvIds",
    "FaultInjector",
    "Gripper",
    "Health",
    "InferenceTransport",
    "Observation",
    "ObservationError",
    "ObservationTranslator",
    "ObservationTranslatorRecord",
    "Option",
    "PartRecord",
    "PendingReplies",
    "PluginError",
    "ProbeRecord",
    "ProbeReport",
    "ProbeRun",
    "ProbeStep",
    "ProtocolError",
    "Query",
    "ReadsServerMetadata",
    "Record",
    "ReferenceServerRecord",
    "Register",
    "ReplyFault",
    "RetryPolicy",
    "RunningServer",
    "ServerError",
    "SplitConnection",
    "StepFailed",
    "TransportError",
    "TransportRecord",
    "TransportTimeout",
    "UnknownAdapterError",
    "batch_size_and_device",
    "check_layouts",
    "describe",
    "droid_observation",
    "fan_out",
    "hookimpl",
    "limit_options",
    "lookup",
    "parse_endpoint",
    "ramp_images",
    "require_batch",
    "require_tensor",
    "resize_with_pad",
    "select_rows",
    "server_limit_options",
    "start_failure",
    "wait_for",
    "wait_ready",
]
