"""The interfaces of the parts an adapter is composed of.

An adapter is three parts called in this order for the envs that need a new action chunk:

1. an :class:`ObservationTranslator` turns the env observation rows of those envs into the
   protocol's wire request (pure: tensors in, arrays/dicts out, no I/O);
2. an :class:`InferenceTransport` sends the request to the policy server and returns its reply
   (owns sockets, timeouts, reconnects and the wire codec);
3. an :class:`ActionTranslator` turns the reply into a ``(k, H, action_dim)`` tensor on the env
   device (pure).

Translator and transport agree on the request/reply form through their ``protocol`` name (see
:mod:`arena_adapters.records`); the core never looks inside requests or replies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # annotations only: reference servers import this module without torch
    import torch

EnvIds = npt.NDArray[np.int64]
"""Host array of env ids (int64)."""

Observation = Mapping[str, Any]
"""An Isaac Lab style observation: nested dicts of tensors whose first axis is num_envs."""


@dataclass(frozen=True)
class Query:
    """Which envs an inference is for, handed to both translators.

    Attributes:
        env_ids: the queried env ids, ascending, as a LongTensor on ``device``.
        env_ids_host: the same ids as a host int64 array (no device sync needed to read them).
        device: the env device; action chunks must be returned on it.
        num_envs: the number of envs in the observation.
        instructions: the task instruction of each queried env (``""`` where none was set).
    """

    env_ids: torch.Tensor
    env_ids_host: EnvIds
    device: torch.device
    num_envs: int
    instructions: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """The number of queried envs, ``k``."""
        return len(self.env_ids_host)

    @property
    def is_all_envs(self) -> bool:
        """True when every env is queried, in order (rows need no gather)."""
        return self.size == self.num_envs


@dataclass(frozen=True)
class Health:
    """The outcome of a transport's health check."""

    ok: bool
    detail: str = ""
    latency_s: float = 0.0


@runtime_checkable
class ObservationTranslator(Protocol):
    """Turns env observations into a protocol's wire request. Pure: no I/O.

    Optionally implements ``on_connect(transport)``, called once after the transport connects and
    before the first ``translate``, to read server metadata (for example GR00T's modality config).
    """

    def translate(self, observation: Observation, query: Query) -> Any:
        """Return the wire request for the envs in ``query``.

        Raises:
            ObservationError: a key is missing or has the wrong shape/dtype; nothing was sent.
        """
        ...


@runtime_checkable
class ActionTranslator(Protocol):
    """Turns a protocol's wire reply into an action chunk tensor. Pure: no I/O.

    Optionally implements ``on_connect(transport)`` like :class:`ObservationTranslator`.
    """

    def translate(self, reply: Any, query: Query) -> torch.Tensor:
        """Return a float tensor ``(query.size, H, action_dim)`` on ``query.device``.

        Raises:
            ActionError: the reply has the wrong shape or keys.
        """
        ...


@runtime_checkable
class InferenceTransport(Protocol):
    """Carries wire requests to a policy server and brings back its replies.

    Build one on :class:`arena_adapters.transport.ClientTransport` (the transport kit), which keeps
    every promise below for you; the record then declares the ``"deadlines"`` capability.

    Every call takes an optional ``deadline`` (an :class:`arena_adapters.transport.Deadline`;
    ``None``: :attr:`timeout` seconds from now) and must not block past it. A transport whose record
    does not declare ``"deadlines"`` is run on a watchdog thread by the core instead.

    Attributes:
        timeout: the default budget of one call, in seconds.
    """

    timeout: float

    def connect(self, deadline: Any = None) -> None:
        """Open the connection(s). Called lazily before the first request; may be called again.

        Raises:
            TransportError, TransportTimeout: the server cannot be reached.
        """
        ...

    def health(self, deadline: Any = None) -> Health:
        """Check that the server is alive, cheaply (a ping, ``/healthz``, ...). Never raises."""
        ...

    def metadata(self, deadline: Any = None) -> Mapping[str, Any]:
        """Return what the server says about itself (``{}`` if the protocol has nothing).

        Raises:
            AdapterError subclasses, as :meth:`infer`.
        """
        ...

    def infer(self, request: Any, deadline: Any = None) -> Any:
        """Send one wire request (as made by the observation translator) and return the reply.

        Raises:
            TransportTimeout: no reply by the deadline.
            TransportError: the connection failed (``retryable`` when the server cannot have seen it).
            ServerError: the server replied with an error.
            ProtocolError: the reply could not be decoded or exceeds a decode limit.
        """
        ...

    def reset(self, env_ids: EnvIds | None, deadline: Any = None) -> None:
        """Tell the server that these envs (``None``: all) started new episodes, where the protocol
        has a reset; otherwise do nothing."""
        ...

    def close(self) -> None:
        """Abort requests in flight (they end with a TransportError at once) and release every
        socket and thread. Final and idempotent; never holds interpreter exit."""
        ...


class RunningServer(Protocol):
    """A reference server started by a plugin (see ``ReferenceServerRecord``)."""

    @property
    def endpoint(self) -> str:
        """The address a client connects to, e.g. ``tcp://127.0.0.1:5555``."""
        ...

    def stop(self) -> None:
        """Stop serving and release the port. Idempotent."""
        ...

    def wait(self) -> None:
        """Block until the server stops (for ``arena-adapters serve``)."""
        ...


@dataclass
class ProbeStep:
    """One step of a probe: what was checked, whether it passed, how long it took."""

    name: str
    ok: bool
    latency_s: float = 0.0
    detail: str = ""


@dataclass
class ProbeReport:
    """The result of ``arena-adapters ping``: every step in order."""

    endpoint: str
    steps: list[ProbeStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there was at least one step and all passed."""
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failure(self) -> str:
        """A one-line reason for the first failed step, or ``""``."""
        for step in self.steps:
            if not step.ok:
                return f"{step.name} failed: {step.detail}"
        return "" if self.steps else "no step was run"


class ReadsServerMetadata(Protocol):
    """A translator with the optional ``on_connect(transport)`` method."""

    def on_connect(self, transport: InferenceTransport) -> None:
        """Read what the translator needs from the server, once, before the first query."""
        ...


def has_on_connect(part: object) -> TypeGuard[ReadsServerMetadata]:
    """True when ``part`` implements the optional ``on_connect(transport)`` method."""
    return callable(getattr(part, "on_connect", None))
