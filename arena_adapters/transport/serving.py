"""What every reference server does alike: request limits, start-up failures, injected faults.

- :func:`start_failure` is the one error a server's start-up raises (a port that cannot be bound,
  a server that did not become ready by its deadline): a :class:`~arena_adapters.errors.TransportError`
  naming the server, the address and the fix.
- :func:`wait_ready` waits for a server thread's readiness within a deadline.
- :class:`ReplyFault` and :data:`FaultInjector`: a reference server started with
  ``fault_injector=f`` calls ``f(reply_bytes)`` before each reply and does what the returned fault
  says instead (send other bytes, send nothing, drop the connection, trickle the bytes slowly). The
  conformance kit and fault-injection tests use it to turn any plugin's own server hostile.
- :func:`server_limit_options`: the options that bound the requests a server accepts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from arena_adapters.errors import TransportError
from arena_adapters.options import Option
from arena_adapters.transport.deadline import Deadline
from arena_adapters.transport.limits import MiB, limit_options

SERVER_MAX_REQUEST_BYTES = 256 * MiB
"""The default request cap of reference servers (one GR00T request of 1024 envs with two 180x320
cameras is about 354 MB: raise ``max_message_bytes`` for such batches)."""


def server_limit_options(max_message_bytes: int = SERVER_MAX_REQUEST_BYTES) -> tuple[Option, ...]:
    """The ``max_*`` options of a reference server: the bounds on the requests it decodes."""
    return limit_options(max_message_bytes=max_message_bytes, for_server=True)


BIND_ERRORS: tuple[type[BaseException], ...] = (OSError, OverflowError)
"""What binding a socket raises for a busy port or a bad address (``OSError``) or a port out of range
(``OverflowError``): catch these around a bind and raise :func:`start_failure` instead."""


def start_failure(server: str, address: str, cause: BaseException | str) -> TransportError:
    """The error a reference server's start-up raises, whatever failed (a bind, a readiness wait),
    naming the server, the address, the cause and what usually fixes it::

        try:
            sock.bind(address)
        except BIND_ERRORS as exc:
            raise start_failure("MyProto reference server", f"{host}:{port}", exc) from exc
    """
    detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
    errno = getattr(cause, "errno", None)
    hint = ""
    if errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows (also ZeroMQ's)
        hint = " (the port is in use: stop the other server or pick another --port; 0 picks a free one)"
    elif errno in (13, 10013):
        hint = " (permission denied: ports below 1024 need privileges)"
    elif isinstance(cause, OverflowError):
        hint = " (ports are 1-65535; 0 picks a free one)"
    return TransportError(f"{server} cannot serve on {address}: {detail}{hint}", endpoint=address)


def wait_ready(ready: threading.Event, deadline: Deadline, server: str, address: str) -> None:
    """Wait until ``ready`` is set, no later than ``deadline``.

    Raises:
        TransportError: the server did not become ready in time.
    """
    if not ready.wait(deadline.remaining()):
        raise start_failure(server, address, f"not ready within {deadline.budget:g} s")


@dataclass(frozen=True)
class ReplyFault:
    """What a reference server does instead of sending its reply.

    Attributes:
        kind: ``"replace"`` (send ``data`` instead), ``"silence"`` (never answer this request),
            ``"close"`` (drop the connection), ``"trickle"`` (send ``data`` a byte every
            ``interval_s`` where the protocol streams bytes; elsewhere: send it after ``interval_s``).
        data: the bytes to send for ``replace`` and ``trickle``.
        interval_s: the trickle pace.
    """

    kind: Literal["replace", "silence", "close", "trickle"]
    data: bytes = b""
    interval_s: float = 0.0


FaultInjector = Callable[[bytes], "ReplyFault | None"]
"""Called by a reference server with each reply's bytes; ``None`` sends the reply as is."""
