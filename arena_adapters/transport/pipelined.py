"""Per-env requests kept in flight by the calling thread: all sent, then read back in order.

Used by the kit's fan-out when the protocol's connections are
:class:`~arena_adapters.transport.connections.SplitConnection`: no worker threads, so no thread
hand-offs (a thread that wakes beside a busy one waits for the GIL), and the servers work on the
first requests while the later ones are encoded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from arena_adapters.errors import AdapterError
from arena_adapters.transport.threads import name_request

Seat = TypeVar("Seat")


class PendingReplies(Generic[Seat]):
    """``count`` requests: the first ``window`` are sent at once, each later one as soon as an
    earlier reply was read; :meth:`collect` returns the replies in order.

    Args:
        count: requests to make.
        send: sends request ``index`` and returns what :meth:`collect` reads its reply from.
        receive: reads (and decodes) the reply of a sent request; the seat is free afterwards.
        drop: ends a sent request whose reply will not be read (its connection is aborted).
        window: requests in flight at most.

    A failure of any request drops every other one in flight and is raised, its message naming the
    request (``env request 2 of 8: ...``), from the constructor (a send) or :meth:`collect`.
    """

    def __init__(
        self,
        count: int,
        send: Callable[[int], Seat],
        receive: Callable[[Seat], Any],
        drop: Callable[[Seat], None],
        window: int,
    ) -> None:
        self._count = count
        self._send = send
        self._receive = receive
        self._drop = drop
        self._window = max(1, window)
        self._in_flight: deque[tuple[int, Seat]] = deque()
        self._next = 0
        self._replies: list[Any] = [None] * count
        self._guarded(self._fill)

    def collect(self) -> list[Any]:
        """Every reply, in request order."""
        self._guarded(self._read_all)
        return self._replies

    def abort(self) -> None:
        """Drop every request in flight (their replies are never read). Idempotent."""
        while self._in_flight:
            _, seat = self._in_flight.popleft()
            self._drop(seat)
        self._next = self._count

    def _fill(self) -> None:
        while self._next < self._count and len(self._in_flight) < self._window:
            index = self._next
            self._next += 1
            self._in_flight.append((index, self._sending(index)))

    def _sending(self, index: int) -> Seat:
        try:
            return self._send(index)
        except AdapterError as error:
            raise name_request(error, index, self._count) from None

    def _read_all(self) -> None:
        while self._in_flight:
            index, seat = self._in_flight.popleft()
            try:
                self._replies[index] = self._receive(seat)
            except AdapterError as error:
                raise name_request(error, index, self._count) from None
            self._fill()

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except BaseException:
            self.abort()
            raise
