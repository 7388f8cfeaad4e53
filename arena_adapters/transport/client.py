"""The base class of every kit transport: the protocol supplies its codec and one exchange, the
kit keeps the promises.

A plugin subclasses :class:`ClientTransport` and implements three methods:

- :meth:`~ClientTransport.open_connection`: open one :class:`~arena_adapters.transport.Connection`
  (its ``exchange(payload, deadline)`` sends and waits for the reply bytes; ``abort()`` ends it);
- :meth:`~ClientTransport.encode`: a message -> the payload the connection sends;
- :meth:`~ClientTransport.decode`: reply bytes -> a message, within :attr:`~ClientTransport.limits`.

The kit does the rest, alike for every protocol: each call has a deadline that bounds every wait;
connections are pooled and those that failed are dropped; a retryable failure (the server cannot
have seen the request) is resent under one :class:`~arena_adapters.transport.RetryPolicy`, nothing
else is; per-env messages fan out concurrently (``per_env_requests = True``); whatever a codec or a
socket raises becomes an :class:`~arena_adapters.errors.AdapterError` naming the endpoint and the
request; :meth:`~ClientTransport.close` is final, prompt and idempotent (it aborts requests in
flight, which end with a :class:`~arena_adapters.errors.TransportError`), and its threads are
daemons that never hold interpreter exit.
"""

from __future__ import annotations

import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar, TypeVar

from arena_adapters.errors import AdapterError, ProtocolError, TransportError
from arena_adapters.parts import EnvIds, Health
from arena_adapters.transport.connections import Connection, ConnectionPool
from arena_adapters.transport.deadline import Deadline
from arena_adapters.transport.endpoints import Endpoint, parse_endpoint
from arena_adapters.transport.limits import DecodeLimits
from arena_adapters.transport.retry import RetryPolicy
from arena_adapters.transport.threads import DaemonPool, fan_out

T = TypeVar("T")
logger = logging.getLogger(__name__)

DEADLINES = "deadlines"
"""The transport capability of honouring the deadline of every call (all kit transports do).
The core runs the calls of a transport without it on a watchdog thread instead."""


class ClientTransport(ABC):
    """An :class:`~arena_adapters.parts.InferenceTransport` built on the transport kit.

    Args:
        endpoint: the server address (one replica: the core spreads envs over several).
        timeout: the default budget of one call, in seconds.
        limits: decode limits for replies.
        retry: how retryable failures are resent.
        max_concurrency: per-env requests in flight at once (with ``per_env_requests``).
        credentials: True when the user gave authentication (for the non-loopback warning).
    """

    protocol_title: ClassVar[str] = "policy"
    """The protocol's name in messages (``"GR00T"``)."""
    schemes: ClassVar[tuple[str, ...]] = ("tcp",)
    """The URL schemes the protocol accepts, the default first."""
    default_port: ClassVar[int | Mapping[str, int] | None] = None
    """The port when an endpoint gives none (or one per scheme); ``None``: the port is required."""
    endpoint_path: ClassVar[bool] = False
    """Whether an endpoint may carry a path (HTTP base URLs)."""
    per_env_requests: ClassVar[bool] = False
    """True when the server takes one env's observation per request: :meth:`infer` then takes a
    list of per-env messages and fans them out."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 30.0,
        limits: DecodeLimits | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 16,
        credentials: bool = False,
    ) -> None:
        self.endpoint: Endpoint = parse_endpoint(
            endpoint, schemes=self.schemes, default_port=self.default_port, allow_path=self.endpoint_path
        )
        self.timeout = float(timeout)
        self.limits = limits or DecodeLimits()
        self.retry = retry or RetryPolicy()
        name = f"{self.protocol_title} {self.endpoint}"
        size = max(1, max_concurrency) if self.per_env_requests else 1
        self._pool = ConnectionPool(self.open_connection, size, name)
        self._threads = DaemonPool(size, f"arena-adapters-{self.protocol_title.lower()}") if size > 1 else None
        self._finalizer = weakref.finalize(self, _close_all, self._pool, self._threads)
        self._insecure_checked = False
        self.credentials = credentials

    # ------------------------------------------------------------------ what a plugin supplies

    @abstractmethod
    def open_connection(self, deadline: Deadline) -> Connection:
        """Open one connection to :attr:`endpoint` by ``deadline``.

        Raises:
            TransportTimeout, TransportError (``retryable=True`` when refused): see
            :class:`~arena_adapters.transport.Connection`.
        """

    @abstractmethod
    def encode(self, message: Any) -> Any:
        """The payload :meth:`Connection.exchange` sends for ``message``."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The message in ``data``, decoded within :attr:`limits` (raise ProtocolError beyond them)."""

    # ------------------------------------------------------------------------- the kit's calls

    def deadline(self, deadline: Deadline | None = None) -> Deadline:
        """``deadline``, or one :attr:`timeout` from now."""
        return deadline if deadline is not None else Deadline.after(self.timeout)

    def call(self, message: Any, deadline: Deadline | None = None, what: str = "request") -> Any:
        """Send one message and return the decoded reply: encode, exchange (resent only when
        retryable), check the size, decode.

        Raises:
            TransportTimeout, TransportError, ServerError, ProtocolError, with the endpoint and
            ``what`` in their context.
        """
        deadline = self.deadline(deadline)
        self._check_open(what)
        try:
            payload = self.encode(message)
        except AdapterError as error:
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None
        except Exception as exc:
            raise ProtocolError(
                f"cannot encode the {what} for {self.protocol_title}: {type(exc).__name__}: {exc}",
                endpoint=str(self.endpoint), request=what,
            ) from exc
        data = self.exchange(payload, deadline, what)
        return self.decode_reply(data, what)

    def exchange(self, payload: Any, deadline: Deadline, what: str = "request") -> bytes:
        """One round trip of an encoded payload on a pooled connection, resent only when retryable."""
        self._warn_if_insecure()
        return self.retry.run(lambda attempt: self._exchange_once(payload, deadline, what), deadline, what)

    def decode_reply(self, data: bytes, what: str = "request") -> Any:
        """Decode reply bytes within the limits; anything the decoder raises is a ProtocolError."""
        try:
            self.limits.check_message(len(data), f"reply to {what}")
            return self.decode(data)
        except AdapterError as error:
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None
        except Exception as exc:  # a decoder's bug or a hostile reply must not escape untyped
            raise ProtocolError(
                f"undecodable reply from {self.protocol_title} server: {type(exc).__name__}: {_short(exc)}",
                endpoint=str(self.endpoint), request=what,
            ) from None

    def call_each(self, messages: Sequence[Any], deadline: Deadline | None = None, what: str = "request") -> list[Any]:
        """:meth:`call` for each message, concurrently (at most ``max_concurrency`` at once); the
        replies come back in order."""
        deadline = self.deadline(deadline)
        calls: list[Callable[[], Any]] = [partial(self.call, message, deadline, what) for message in messages]
        if not calls:
            return []
        if self._threads is None:
            return [call() for call in calls]
        try:
            return fan_out(self._threads, calls, deadline, f"{self.protocol_title} {what}", self._pool.abort_busy)
        except AdapterError as error:
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None

    def _exchange_once(self, payload: Any, deadline: Deadline, what: str) -> bytes:
        seat = self._pool.acquire(deadline)
        broken = True
        try:
            assert seat.connection is not None
            data = seat.connection.exchange(payload, deadline)
            broken = False
            return data
        except AdapterError as error:
            if self._pool.closed and not isinstance(error, TransportError):
                raise TransportError(f"{what}: the transport was closed", endpoint=str(self.endpoint)) from None
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None
        except Exception as exc:
            if self._pool.closed:
                raise TransportError(f"{what}: the transport was closed", endpoint=str(self.endpoint)) from None
            raise TransportError(
                f"{self.protocol_title} connection failed: {type(exc).__name__}: {_short(exc)}",
                endpoint=str(self.endpoint), request=what,
            ) from exc
        finally:
            self._pool.release(seat, broken=broken)

    # ---------------------------------------------------------------- InferenceTransport API

    def connect(self, deadline: Deadline | None = None) -> None:
        """Open a connection now, so that an unreachable server shows at once. Idempotent."""
        deadline = self.deadline(deadline)
        self._check_open("connect")
        self._warn_if_insecure()

        def open_one(attempt: int) -> None:
            try:
                seat = self._pool.acquire(deadline)
            except AdapterError as error:
                raise error.add_context(endpoint=str(self.endpoint), request="connect") from None
            self._pool.release(seat)

        self.retry.run(open_one, deadline, "connect")

    def infer(self, request: Any, deadline: Deadline | None = None) -> Any:
        """Send a request and return the reply; a list of per-env messages fans out when the
        protocol takes one env per request."""
        if self.per_env_requests and isinstance(request, list):
            return self.call_each(request, deadline, "inference")
        return self.call(request, deadline, "inference")

    def health(self, deadline: Deadline | None = None) -> Health:
        """Whether a connection opens (protocols with a ping override this). Never raises."""
        deadline = self.deadline(deadline)
        started = deadline.remaining()
        try:
            self.connect(deadline)
        except AdapterError as error:
            return Health(ok=False, detail=str(error), latency_s=started - deadline.remaining())
        return Health(ok=True, detail=f"connected to {self.endpoint}", latency_s=started - deadline.remaining())

    def metadata(self, deadline: Deadline | None = None) -> Mapping[str, Any]:
        """What the server says about itself; ``{}`` unless the protocol overrides it."""
        return {}

    def reset(self, env_ids: EnvIds | None, deadline: Deadline | None = None) -> None:  # noqa: B027
        """Nothing, unless the protocol has a reset (then it overrides this)."""

    def close(self) -> None:
        """Abort requests in flight, release every connection and thread. Final and idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._pool.closed

    @property
    def open_connections(self) -> int:
        """Connections open right now (for tests and monitoring)."""
        return self._pool.open_connections

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self, what: str) -> None:
        if self._pool.closed:
            raise TransportError(f"{what}: the {self.protocol_title} transport is closed", endpoint=str(self.endpoint))

    def _warn_if_insecure(self) -> None:
        if self._insecure_checked:  # once: telling needs the host's address parsed
            return
        self._insecure_checked = True
        if not self.endpoint.is_loopback and not self.credentials:
            logger.warning(
                "%s endpoint %s is not on this machine and no credentials are set: anyone who can reach it can "
                "use it (set the adapter's token/key option, and use a TLS endpoint where the protocol has one)",
                self.protocol_title, self.endpoint,
            )


def _close_all(pool: ConnectionPool, threads: DaemonPool | None) -> None:
    pool.close()
    if threads is not None:
        threads.close()


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
