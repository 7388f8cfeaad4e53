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
else is; per-env messages fan out concurrently (``per_env_requests = True``): from the calling
thread when the connections send and receive apart (a
:class:`~arena_adapters.transport.connections.SplitConnection`), else on a pool of threads;
whatever a codec or a socket raises becomes an :class:`~arena_adapters.errors.AdapterError` naming
the endpoint and the request; :meth:`~ClientTransport.close` is final, prompt and idempotent (it
aborts requests in flight, which end with a :class:`~arena_adapters.errors.TransportError`), and
its threads are daemons that never hold interpreter exit.
"""

from __future__ import annotations

import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar, TypeVar, cast

from arena_adapters.errors import AdapterError, ProtocolError, TransportError
from arena_adapters.parts import EnvIds, Health
from arena_adapters.transport.connections import Connection, ConnectionPool, Seat, SplitConnection
from arena_adapters.transport.deadline import Deadline
from arena_adapters.transport.endpoints import Endpoint, parse_endpoint
from arena_adapters.transport.limits import DecodeLimits
from arena_adapters.transport.pipelined import PendingReplies
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
        self._window = size
        self._split: bool | None = None  # whether the connections are SplitConnections (known once one opened)
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
        data = self.exchange(self._encode(message, what), deadline, what)
        return self.decode_reply(data, what)

    def _encode(self, message: Any, what: str) -> Any:
        try:
            return self.encode(message)
        except AdapterError as error:
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None
        except Exception as exc:
            raise ProtocolError(
                f"cannot encode the {what} for {self.protocol_title}: {type(exc).__name__}: {exc}",
                endpoint=str(self.endpoint), request=what,
            ) from exc

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
        replies come back in order. With :class:`SplitConnection` connections the calling thread
        sends them all and reads the replies back (:meth:`send_each`); otherwise they fan out on
        the transport's threads."""
        deadline = self.deadline(deadline)
        if not messages:
            return []
        if self._threads is None:
            return [self.call(message, deadline, what) for message in messages]
        if self._splits(deadline, what):
            return self.send_each(messages, deadline, what).collect()
        calls: list[Callable[[], Any]] = [partial(self.call, message, deadline, what) for message in messages]
        try:
            return fan_out(self._threads, calls, deadline, f"{self.protocol_title} {what}", self._pool.abort_busy)
        except AdapterError as error:
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None

    def send_each(self, messages: Sequence[Any], deadline: Deadline | None = None,
                  what: str = "request") -> PendingReplies[Seat]:
        """Send each message from this thread, each on a connection of its own (at most
        ``max_concurrency`` in flight: later ones go out as replies are read), and return the
        requests in flight; their ``collect()`` reads and decodes the replies, in order. Needs
        :class:`SplitConnection` connections.

        The servers start on the first requests while the later ones are encoded, and several
        transports' requests can be in flight at once from one thread (the core's replicas).

        Raises:
            as :meth:`call`, from here or ``collect()``; a failure drops every request in flight.
        """
        deadline = self.deadline(deadline)
        self._check_open(what)
        if not self._splits(deadline, what):
            raise TransportError(f"{self.protocol_title} connections cannot send and receive apart",
                                 endpoint=str(self.endpoint), request=what)
        return PendingReplies(
            len(messages),
            lambda index: self._send(self._encode(messages[index], what), deadline, what),
            lambda seat: self.decode_reply(self._receive(seat, deadline, what), what),
            lambda seat: self._pool.release(seat, broken=True),
            self._window,
        )

    def _splits(self, deadline: Deadline, what: str) -> bool:
        """Whether the connections are :class:`SplitConnection` (one is opened to tell, the first time)."""
        if self._split is None:
            self._warn_if_insecure()
            self.retry.run(lambda attempt: self._open_one(deadline, what), deadline, what)
        return bool(self._split)

    def _open_one(self, deadline: Deadline, what: str) -> None:
        """Hold a pooled connection (opened now if none is open) and note whether it splits."""
        seat = self._acquire(deadline, what)
        self._split = isinstance(seat.connection, SplitConnection)
        self._pool.release(seat)

    def _acquire(self, deadline: Deadline, what: str) -> Seat:
        try:
            return self._pool.acquire(deadline)
        except AdapterError as error:
            raise error.add_context(endpoint=str(self.endpoint), request=what) from None

    def _send(self, payload: Any, deadline: Deadline, what: str) -> Seat:
        """``payload`` sent on a pooled connection (resent only when retryable); returns its seat,
        busy until :meth:`_receive` read the reply."""
        self._warn_if_insecure()

        def send_once(attempt: int) -> Seat:
            seat = self._acquire(deadline, what)
            with self._released_if_failed(seat, what):
                cast(SplitConnection, seat.connection).send(payload, deadline)
            return seat

        return self.retry.run(send_once, deadline, what)

    def _receive(self, seat: Seat, deadline: Deadline, what: str) -> bytes:
        """The reply on ``seat``'s connection; the seat is released."""
        with self._released_if_failed(seat, what):
            data = cast(SplitConnection, seat.connection).receive(deadline)
        self._pool.release(seat)
        return data

    def _exchange_once(self, payload: Any, deadline: Deadline, what: str) -> bytes:
        seat = self._acquire(deadline, what)
        with self._released_if_failed(seat, what):
            assert seat.connection is not None
            data = seat.connection.exchange(payload, deadline)
        self._pool.release(seat)
        return data

    @contextmanager
    def _released_if_failed(self, seat: Seat, what: str) -> Iterator[None]:
        """Releases ``seat`` as broken when the block fails, with the failure as a typed error."""
        try:
            yield
        except BaseException as exc:
            self._pool.release(seat, broken=True)
            if isinstance(exc, AdapterError):
                if self._pool.closed and not isinstance(exc, TransportError):
                    raise TransportError(f"{what}: the transport was closed", endpoint=str(self.endpoint)) from None
                raise exc.add_context(endpoint=str(self.endpoint), request=what) from None
            if not isinstance(exc, Exception):
                raise
            if self._pool.closed:
                raise TransportError(f"{what}: the transport was closed", endpoint=str(self.endpoint)) from None
            raise TransportError(
                f"{self.protocol_title} connection failed: {type(exc).__name__}: {_short(exc)}",
                endpoint=str(self.endpoint), request=what,
            ) from exc

    # ---------------------------------------------------------------- InferenceTransport API

    def connect(self, deadline: Deadline | None = None) -> None:
        """Open a connection now, so that an unreachable server shows at once. Idempotent."""
        deadline = self.deadline(deadline)
        self._check_open("connect")
        self._warn_if_insecure()
        self.retry.run(lambda attempt: self._open_one(deadline, "connect"), deadline, "connect")

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
    def sends_apart(self) -> bool:
        """True when :meth:`send_each` can be used: per-env requests, and connections that send and
        receive apart (:class:`SplitConnection`; known once one was opened, as :meth:`connect` does)."""
        return bool(self.per_env_requests and self._threads is not None and self._split)

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
