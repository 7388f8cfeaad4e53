"""The built-in ``local`` adapter: a Python callable in-process, no network.

It runs through the same translators and the same scheduler as the network adapters, for local
models and for tests::

    def policy(observation):            # rows of the queried envs, tensors on the env device
        joints = observation["policy"]["joint_pos"]      # (k, 7)
        return joints.unsqueeze(1).repeat(1, 16, 1)      # chunk (k, H=16, D=7)

    policy = arena_adapters.load_policy("local", policy=policy, execute_steps=8)

The callable gets the observation restricted to the queried envs, plus ``"instruction"`` (a list of
str, one per queried env) when an instruction is set. It returns a chunk ``(k, H, D)`` or a single
action per env ``(k, D)``, as a tensor, a numpy array or nested lists. If the callable has a
``reset(env_ids)`` method it is called on resets.

Because the transport accepts any request form, another protocol's translators can be used with
it, e.g. ``load_policy("local", policy=fake_server, observation_translator="gr00t.droid",
action_translator="gr00t.droid")`` runs the GR00T translators against an in-process fake.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from arena_adapters.errors import ActionError, AdapterError, ConfigError, ServerError
from arena_adapters.hookspecs import Register, hookimpl
from arena_adapters.importing import import_object
from arena_adapters.observations import describe, select_rows
from arena_adapters.options import Option
from arena_adapters.parts import EnvIds, Health, Observation, Query
from arena_adapters.records import (
    ANY_PROTOCOL,
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    ServedExpertRecord,
    TransportRecord,
)

PROTOCOL = "local"


class CallableTransport:
    """An :class:`~arena_adapters.parts.InferenceTransport` that calls a Python callable.

    It declares no ``"deadlines"`` capability: the core runs it on a watchdog thread, so a callable
    that hangs gives :class:`~arena_adapters.errors.TransportTimeout` after ``timeout`` seconds.
    Whatever the callable raises is a :class:`~arena_adapters.errors.ServerError` carrying its
    traceback, as a server's failure would be.
    """

    def __init__(self, policy: Any, timeout: float = 30.0) -> None:
        self.timeout = float(timeout)
        if isinstance(policy, str):
            policy = import_object(policy)
            if isinstance(policy, type):  # 'module:Class' names a policy class: make one
                policy = policy()
        if not callable(policy):
            raise ConfigError(f"option 'policy': expected a callable or 'module:attr', got {policy!r}")
        self.policy = policy

    def connect(self, deadline: Any = None) -> None:
        """Nothing to connect."""

    def health(self, deadline: Any = None) -> Health:
        """Always healthy: the callable is in-process."""
        return Health(ok=True, detail="in-process callable")

    def metadata(self, deadline: Any = None) -> Mapping[str, Any]:
        """The callable's ``metadata`` attribute, if it has one."""
        return dict(getattr(self.policy, "metadata", {}) or {})

    def infer(self, request: Any, deadline: Any = None) -> Any:
        """Call the callable with the request."""
        return self._call(self.policy, request)

    def reset(self, env_ids: EnvIds | None, deadline: Any = None) -> None:
        """Call the callable's ``reset(env_ids)`` if it has one."""
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            self._call(reset, env_ids)

    @staticmethod
    def _call(function: Any, argument: Any) -> Any:
        try:
            return function(argument)
        except AdapterError:
            raise
        except Exception as exc:
            raise ServerError(
                f"the local policy raised {type(exc).__name__}: {exc}", server_message=traceback.format_exc()
            ) from exc

    def close(self) -> None:
        """Nothing to release."""


class PassthroughObservations:
    """Hands the queried envs' observation rows to the callable unchanged (tensors stay on device)."""

    def translate(self, observation: Observation, query: Query) -> dict[str, Any]:
        """The nested observation restricted to the rows of ``query.env_ids``."""
        rows = _rows(observation, query)
        if any(query.instructions):
            rows["instruction"] = list(query.instructions)
        return rows


def _rows(node: Mapping[str, Any], query: Query) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping):
            out[key] = _rows(value, query)
        elif isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == query.num_envs:
            out[key] = select_rows(value, query)
        else:
            out[key] = value
    return out


class ChunkActions:
    """Accepts ``(k, H, D)`` or ``(k, D)`` actions as tensor, array or lists."""

    def translate(self, reply: Any, query: Query) -> torch.Tensor:
        """Return the reply as a float ``(k, H, D)`` tensor on the env device."""
        try:
            chunk = torch.as_tensor(np.asarray(reply) if isinstance(reply, list) else reply)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ActionError(f"local policy returned {describe(reply)}, not an array of actions: {exc}") from exc
        if chunk.ndim == 2:
            chunk = chunk.unsqueeze(1)
        if chunk.ndim != 3 or chunk.shape[0] != query.size or not chunk.is_floating_point():
            raise ActionError(
                f"local policy returned {describe(chunk)}; expected float (k={query.size}, H, D) or (k, D)"
            )
        return chunk.to(query.device, non_blocking=True)


@hookimpl
def register_transports(register: Register[TransportRecord]) -> None:
    register(TransportRecord(
        name="local.callable",
        protocol=ANY_PROTOCOL,
        factory=CallableTransport,
        description="calls a Python callable in-process (no network)",
        options=(
            Option("policy", object, help="a callable or 'module:attr' returning action chunks"),
            Option("timeout", float, 30.0, "seconds one call of the callable may take", above=0),
        ),
        capabilities=frozenset({"batched"}),
    ))


@hookimpl
def register_observation_translators(register: Register[ObservationTranslatorRecord]) -> None:
    register(ObservationTranslatorRecord(
        name="local.passthrough",
        protocol=PROTOCOL,
        factory=PassthroughObservations,
        description="the queried envs' observation rows, unchanged",
    ))


@hookimpl
def register_action_translators(register: Register[ActionTranslatorRecord]) -> None:
    register(ActionTranslatorRecord(
        name="local.chunk",
        protocol=PROTOCOL,
        factory=ChunkActions,
        description="(k, H, D) or (k, D) arrays/tensors as action chunks",
    ))


@hookimpl
def register_adapters(register: Register[AdapterRecord]) -> None:
    register(AdapterRecord(
        name="local",
        protocol=PROTOCOL,
        transport="local.callable",
        observation_translator="local.passthrough",
        action_translator="local.chunk",
        description="runs a Python callable in-process through the shared scheduler",
    ))


def reach_expert() -> Any:
    """The ``reach`` expert on the env's own observations (imported on first use)."""
    from arena_adapters.envs.reach_serving import LocalReachExpert

    return LocalReachExpert()


@hookimpl
def register_served_experts(register: Register[ServedExpertRecord]) -> None:
    register(ServedExpertRecord(
        name="local.reach_expert",
        protocol=PROTOCOL,
        factory=reach_expert,
        description="the reach expert in-process (32-step chunks)",
        adapter="local",
        environment="reach",
        client_options={"execute_steps": 8},
        in_process=True,
    ))
