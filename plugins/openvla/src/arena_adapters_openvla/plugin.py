"""Hook implementations: the ``openvla`` adapter and its parts.

``load_policy("openvla", endpoint="http://127.0.0.1:8000", instruction="pick up the cup")`` talks to
an OpenVLA ``deploy.py`` server; add ``variant="oft"`` for an OpenVLA-OFT server.
"""

from __future__ import annotations

from typing import Any

from arena_adapters import hookimpl
from arena_adapters.examples import droid_observation
from arena_adapters.hookspecs import Register
from arena_adapters.records import (
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    ProbeRecord,
    ReferenceServerRecord,
    ServedExpertRecord,
    TransportRecord,
)
from arena_adapters.transport import DEADLINES
from arena_adapters_openvla.actions import OpenVlaActions
from arena_adapters_openvla.observations import make_observation_translator
from arena_adapters_openvla.options import (
    ACTION_OPTIONS,
    OBSERVATION_OPTIONS,
    PROBE_OPTIONS,
    PROTOCOL,
    SERVER_OPTIONS,
    TRANSPORT_OPTIONS,
)
from arena_adapters_openvla.probe import probe_server
from arena_adapters_openvla.served_expert import OFT_CLIENT_OPTIONS, OFT_SERVER_OPTIONS, OftReachExpert
from arena_adapters_openvla.server import start_reference_server
from arena_adapters_openvla.transport import HttpTransport

IMAGE_SIZE = 224
"""The side of the example observation's cameras: what OpenVLA's processor resizes to anyway."""


@hookimpl
def register_transports(register: Register[TransportRecord]) -> None:
    register(TransportRecord(
        name="openvla.http",
        protocol=PROTOCOL,
        factory=HttpTransport,
        description="HTTP POST /act with json_numpy bodies (OpenVLA / OpenVLA-OFT deploy.py)",
        options=TRANSPORT_OPTIONS,
        capabilities=frozenset({"concurrent", DEADLINES}),
    ))


@hookimpl
def register_observation_translators(register: Register[ObservationTranslatorRecord]) -> None:
    register(ObservationTranslatorRecord(
        name="openvla.observations",
        protocol=PROTOCOL,
        factory=make_observation_translator,
        description="one camera + instruction (OpenVLA), or full/wrist images + state + instruction (OFT)",
        options=OBSERVATION_OPTIONS,
    ))


@hookimpl
def register_action_translators(register: Register[ActionTranslatorRecord]) -> None:
    register(ActionTranslatorRecord(
        name="openvla.actions",
        protocol=PROTOCOL,
        factory=OpenVlaActions,
        description="one action (OpenVLA) or a list of actions (OFT chunk) -> (k, K, action_dim)",
        options=ACTION_OPTIONS,
    ))


@hookimpl
def register_adapters(register: Register[AdapterRecord]) -> None:
    register(AdapterRecord(
        name="openvla",
        protocol=PROTOCOL,
        transport="openvla.http",
        observation_translator="openvla.observations",
        action_translator="openvla.actions",
        description="OpenVLA / OpenVLA-OFT deploy.py servers over HTTP + json_numpy (variant=openvla|oft)",
        reference_server="openvla.server",
        probe="openvla.probe",
        example_observation=example_observation,
    ))


@hookimpl
def register_reference_servers(register: Register[ReferenceServerRecord]) -> None:
    register(ReferenceServerRecord(
        name="openvla.server",
        protocol=PROTOCOL,
        factory=start_reference_server,
        description="FastAPI POST /act like deploy.py, backed by any callable (needs the 'server' extra)",
        options=SERVER_OPTIONS,
    ))


@hookimpl
def register_probes(register: Register[ProbeRecord]) -> None:
    register(ProbeRecord(
        name="openvla.probe",
        protocol=PROTOCOL,
        factory=probe_server,
        description="GET /openapi.json, one synthetic observation, reply shape, latency",
        options=PROBE_OPTIONS,
    ))


@hookimpl
def register_served_experts(register: Register[ServedExpertRecord]) -> None:
    register(ServedExpertRecord(
        name="openvla.reach_expert",
        protocol=PROTOCOL,
        factory=OftReachExpert,
        description="the reach expert as an OpenVLA-OFT model (16-step chunks from image and state)",
        adapter="openvla",
        environment="reach",
        server_options=OFT_SERVER_OPTIONS,
        client_options=OFT_CLIENT_OPTIONS,
    ))


def example_observation(num_envs: int, device: str = "cpu") -> dict[str, Any]:
    """What the default (``variant="openvla"``) translators read of Isaac Lab Arena's DROID
    observation: the external camera alone (OFT also reads the wrist camera and the state:
    ``arena_adapters.examples.droid_observation``)."""
    full = droid_observation(num_envs, device, height=IMAGE_SIZE, width=IMAGE_SIZE)
    return {"camera_obs": {"external_camera_rgb": full["camera_obs"]["external_camera_rgb"]}}
