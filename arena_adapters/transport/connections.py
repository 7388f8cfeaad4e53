"""Connections and the pool that holds them.

A plugin's :class:`Connection` is one exchange channel to a server: send a payload, wait for the
reply bytes until the deadline. One that can also send and read back apart (a
:class:`SplitConnection`) lets one thread keep several requests in flight. The
:class:`ConnectionPool` opens them lazily, hands each to one request at a time, throws away any
that failed, and aborts every one of them on close, so that a request in flight ends at once.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from arena_adapters.errors import TransportError, TransportTimeout
from arena_adapters.transport.deadline import Deadline


class Connection(Protocol):
    """One channel to a server, used by one request at a time.

    A plugin implements it for its protocol (a ZeroMQ REQ socket, a WebSocket, an HTTP client).
    """

    def exchange(self, payload: Any, deadline: Deadline) -> bytes:
        """Send ``payload`` and return the reply's bytes, waiting no later than ``deadline``.

        Raises:
            TransportTimeout: no reply by the deadline.
            TransportError: the connection failed; ``retryable=True`` only when the server cannot
                have received the request.
            ServerError: the server answered with an error of its own.
            ProtocolError: the reply breaks the protocol (too large, wrong frame type, ...).
        """
        ...

    def abort(self) -> None:
        """Drop the connection at once, from any thread: a blocked :meth:`exchange` must end
        promptly with a :class:`TransportError`. Idempotent."""
        ...


@runtime_checkable
class SplitConnection(Connection, Protocol):
    """A :class:`Connection` that can also send a request and read its reply in two calls.

    The kit's per-env fan-out then runs in the calling thread: it sends every env's request on a
    connection of its own, then reads the replies back in order, with no thread hand-offs (each
    costs a wait for the GIL beside a busy thread). A connection is still used by one request at a
    time: :meth:`receive` follows each :meth:`send` before the connection carries another.
    """

    def send(self, payload: Any, deadline: Deadline) -> None:
        """Send ``payload``, no later than ``deadline``; :meth:`receive` reads its reply.

        Raises:
            as :meth:`Connection.exchange`: ``retryable`` only when the server cannot have
            received the request.
        """
        ...

    def receive(self, deadline: Deadline) -> bytes:
        """The reply to the request :meth:`send` sent, waiting no later than ``deadline``.

        Raises:
            as :meth:`Connection.exchange` (never ``retryable``: the request went out).
        """
        ...


IDLE_CHECK_S = 0.01
"""How long a connection's idle check (its ``closed``, which the pool asks as it hands the
connection out) serves the ``send`` that follows, which then skips its own."""


class IdleCheck:
    """When a connection last found, while idle, that it can carry a request.

    A connection with a ``closed`` property looks at its idle socket there, and again in ``send``
    for a caller that did not go through the pool. Calling :meth:`passed` in the first and asking
    :attr:`recent` in the second makes the pool's look serve both: one system call, not two.
    """

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at = -math.inf

    def passed(self) -> None:
        """The connection was just found usable."""
        self._at = time.monotonic()

    @property
    def recent(self) -> bool:
        """True within :data:`IDLE_CHECK_S` of the last :meth:`passed`."""
        return time.monotonic() - self._at < IDLE_CHECK_S


def is_stale(connection: Connection) -> bool:
    """True when a pooled connection says (optional ``closed`` attribute or property) that the peer
    closed it while it was idle: the pool then opens a new one instead of spending a retry on it."""
    try:
        return bool(getattr(connection, "closed", False))
    except Exception:
        return True


class Seat:
    """One place in a :class:`ConnectionPool`: its connection (``None`` until opened, or after it
    was dropped) and whether a request holds it."""

    __slots__ = ("busy", "connection")

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.busy = False


class ConnectionPool:
    """At most ``size`` connections, each used by one request at a time."""

    def __init__(self, open_connection: Callable[[Deadline], Connection], size: int, name: str) -> None:
        self._open = open_connection
        self.name = name
        self._seats = [Seat() for _ in range(size)]
        self._idle: queue.LifoQueue[Seat] = queue.LifoQueue()
        for seat in reversed(self._seats):
            self._idle.put(seat)
        self._lock = threading.Lock()
        self.closed = False

    def acquire(self, deadline: Deadline) -> Seat:
        """A free seat with an open connection (opened now if needed).

        Raises:
            TransportTimeout: no seat became free, or no connection opened, by the deadline.
            TransportError: the pool is closed, or the connection could not be opened.
        """
        try:
            seat = self._idle.get(timeout=deadline.remaining())
        except queue.Empty:
            raise TransportTimeout(f"{self.name}: no free connection within {deadline.budget:g} s") from None
        with self._lock:
            if self.closed:
                self._idle.put(seat)
                raise TransportError(f"{self.name}: the transport is closed")
            seat.busy = True
        if seat.connection is not None and is_stale(seat.connection):
            with contextlib.suppress(Exception):
                seat.connection.abort()
            seat.connection = None
        if seat.connection is None:
            try:
                seat.connection = self._open(deadline)
            except BaseException:
                self.release(seat)
                raise
            if self.closed:  # closed while opening
                self.release(seat, broken=True)
                raise TransportError(f"{self.name}: the transport is closed")
        return seat

    def release(self, seat: Seat, *, broken: bool = False) -> None:
        """Give ``seat`` back; a ``broken`` connection is aborted and dropped."""
        with self._lock:
            seat.busy = False
            connection = seat.connection if broken or self.closed else None
            if connection is not None:
                seat.connection = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.abort()
        self._idle.put(seat)

    def abort_busy(self) -> None:
        """Abort the connections of requests in flight (their exchanges end at once). They leave the
        pool now, so that one whose request finished meanwhile is not handed out again aborted."""
        busy = []
        with self._lock:
            for seat in self._seats:
                if seat.busy and seat.connection is not None:
                    busy.append(seat.connection)
                    seat.connection = None
        for connection in busy:
            with contextlib.suppress(Exception):
                connection.abort()

    @property
    def open_connections(self) -> int:
        """Connections currently open."""
        return sum(1 for seat in self._seats if seat.connection is not None)

    def close(self) -> None:
        """Abort every connection, busy or idle; later requests fail at once. Idempotent."""
        with self._lock:
            self.closed = True
            connections = [seat.connection for seat in self._seats if seat.connection is not None]
            for seat in self._seats:
                if not seat.busy:
                    seat.connection = None
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.abort()
