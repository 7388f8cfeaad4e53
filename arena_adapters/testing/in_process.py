"""An in-process stand-in for a reference server, for adapters whose transport calls a Python policy.

The built-in ``local`` adapter has no server: its transport calls the object given as its ``policy``
option (a callable or a ``"module:attr"`` path). The conformance kit checks such an adapter against
:class:`InProcessServer`, whose :attr:`~InProcessServer.endpoint` is a ``"module:attr"`` path to the
served policy; once stopped, the same path leads to a policy that raises
:class:`~arena_adapters.errors.TransportError`, as a dead server would. Like the plugins' reference
servers it takes a ``fault_injector`` (:mod:`arena_adapters.transport.serving`): ``silence`` and
``trickle`` hold the call until the fault is cleared or the server stops, ``close`` drops it.
"""

from __future__ import annotations

import itertools
import threading
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from arena_adapters.errors import ObservationError, TransportError
from arena_adapters.transport.serving import FaultInjector

HORIZON = 8
STATE_KEYS = ("joint_pos", "gripper_pos")

SERVED = types.SimpleNamespace()
"""The policies served in this process, by server name (what :attr:`InProcessServer.endpoint` names)."""

_numbers = itertools.count()


def example_observation(num_envs: int, device: str | torch.device = "cpu") -> dict[str, Any]:
    """An observation :class:`EchoStatePolicy` reads: ``policy.joint_pos`` (N, 7) and
    ``policy.gripper_pos`` (N, 1), distinct per env."""
    joints = torch.arange(num_envs * 7, dtype=torch.float32, device=device).reshape(num_envs, 7) / 10
    gripper = torch.linspace(0.0, 1.0, num_envs, device=device).reshape(num_envs, 1)
    return {"policy": {"joint_pos": joints, "gripper_pos": gripper}}


class EchoStatePolicy:
    """A deterministic policy for the ``local`` adapter: for each queried env, ``HORIZON`` actions
    ``state + 0.01 * t`` where ``state`` is ``policy.joint_pos`` followed by ``policy.gripper_pos``.

    A missing key or a wrong shape is an :class:`ObservationError` naming it.
    """

    def __init__(self, horizon: int = HORIZON) -> None:
        self.horizon = horizon
        self.resets: list[Any] = []
        self.metadata = {"policy": "arena-adapters in-process echo of the state", "horizon": horizon}

    def __call__(self, observation: Mapping[str, Any]) -> torch.Tensor:
        group = observation.get("policy")
        if not isinstance(group, Mapping):
            raise ObservationError(f"observation has no 'policy' group; keys: {sorted(observation)}")
        parts = []
        for key in STATE_KEYS:
            value = group.get(key)
            if not isinstance(value, torch.Tensor) or value.ndim != 2:
                got = "nothing" if value is None else f"{type(value).__name__} {getattr(value, 'shape', '')}"
                raise ObservationError(f"observation 'policy.{key}': expected a (k, n) tensor, got {got}")
            parts.append(value.float())
        state = torch.cat(parts, dim=1)
        ramp = 0.01 * torch.arange(self.horizon, dtype=state.dtype, device=state.device)
        return state.unsqueeze(1) + ramp.view(1, -1, 1)

    def reset(self, env_ids: Any) -> None:
        """Remembered, so that tests can see the resets arrive."""
        self.resets.append(env_ids)


class _Stopped:
    """What a stopped server's endpoint leads to: every call is a :class:`TransportError`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, observation: Any) -> Any:
        raise TransportError(f"in-process server {self.name!r} is stopped")


class _Serving:
    """The served callable: the policy's reply, passed through the fault injector."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server
        self.metadata = getattr(server.policy, "metadata", {})

    def __call__(self, observation: Any) -> Any:
        server = self.server
        reply = server.policy(observation)
        injector = server.fault_injector
        if injector is None:
            return reply
        data = np.asarray(reply.detach().cpu() if isinstance(reply, torch.Tensor) else reply).tobytes()
        fault = injector(data)
        while fault is not None and fault.kind in ("silence", "trickle"):
            if server.stopped.wait(0.05):
                raise TransportError(f"in-process server {server.name!r} stopped during the call")
            fault = injector(data)
        if fault is not None and fault.kind == "close":
            raise TransportError(f"in-process server {server.name!r} dropped the call")
        return fault.data if fault is not None else reply

    def reset(self, env_ids: Any) -> None:
        reset = getattr(self.server.policy, "reset", None)
        if callable(reset):
            reset(env_ids)


class InProcessServer:
    """Serves ``policy`` (default :class:`EchoStatePolicy`) in this process; a
    :class:`~arena_adapters.parts.RunningServer` for adapters that take a ``policy`` option."""

    def __init__(self, policy: Any = None, fault_injector: FaultInjector | None = None) -> None:
        self.policy = EchoStatePolicy() if policy is None else policy
        self.fault_injector = fault_injector
        self.stopped = threading.Event()
        self.name = f"server{next(_numbers)}"
        setattr(SERVED, self.name, _Serving(self))

    @property
    def endpoint(self) -> str:
        """The ``"module:attr"`` path of the served policy (the ``local`` adapter's ``policy`` option)."""
        return f"{__name__}:SERVED.{self.name}"

    def stop(self) -> None:
        """From now on the endpoint leads to a policy that raises :class:`TransportError`. Idempotent."""
        self.stopped.set()
        setattr(SERVED, self.name, _Stopped(self.name))

    def wait(self) -> None:
        """Nothing to wait for: the policy runs in the caller's thread."""
