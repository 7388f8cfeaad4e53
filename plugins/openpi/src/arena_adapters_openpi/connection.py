"""One WebSocket connection to an openpi server, used in lockstep: send one observation, receive
one reply.

The server speaks first: right after the handshake it sends one binary frame, its packed metadata
map. An error in the server's ``infer`` arrives as a TEXT frame (the traceback) followed by close
code 1011; the connection is then finished and a new one must be opened.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from arena_adapters.errors import ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters_openpi.codec import DecodeLimits, decode
from arena_adapters_openpi.endpoints import Endpoint

# websockets >= 17 warns unless a directly used connection is asked for explicitly.
_DIRECT: dict[str, Any] = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}

INTERNAL_ERROR = 1011
MESSAGE_TOO_BIG = 1009


class ConnectionFailed(TransportError):
    """A connection could not be opened or broke.

    Attributes:
        retryable: True when sending the request again on a new connection is safe (the server
            cannot have started on it: the connection was refused, or was found closed while idle).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ConnectionSettings:
    """How connections are opened and kept alive.

    Attributes:
        api_key: sent as ``Authorization: Api-Key <key>`` when set.
        connect_timeout: seconds for TCP connect, WebSocket handshake and the metadata frame.
        keepalive_interval: seconds between keepalive pings (``None``: no pings).
        keepalive_timeout: seconds to wait for a pong before dropping the connection (``None``: forever).
        close_timeout: seconds to wait for the server's side of a closing handshake.
        limits: decode limits; ``limits.max_message_bytes`` also caps incoming frames on the socket.
    """

    api_key: str | None = None
    connect_timeout: float = 10.0
    keepalive_interval: float | None = 20.0
    keepalive_timeout: float | None = 20.0
    close_timeout: float = 1.0
    limits: DecodeLimits = field(default_factory=DecodeLimits)

    def headers(self) -> dict[str, str] | None:
        """The extra handshake headers."""
        return {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value), never negative."""
    return max(0.0, deadline - time.monotonic())


class Connection:
    """An open connection whose metadata frame was read. Build it with :meth:`open`."""

    def __init__(self, websocket: ClientConnection, endpoint: Endpoint, metadata: Mapping[str, Any],
                 settings: ConnectionSettings) -> None:
        self.websocket = websocket
        self.endpoint = endpoint
        self.metadata = metadata
        self.settings = settings
        self.exchanges = 0

    @classmethod
    def open(cls, endpoint: Endpoint, settings: ConnectionSettings, deadline: float) -> Connection:
        """Connect, complete the handshake and read the metadata frame.

        Raises:
            TransportTimeout: no handshake or metadata within ``connect_timeout`` / the deadline.
            ConnectionFailed: refused, reset, or the handshake was rejected.
            ProtocolError: the metadata frame is not a packed map.
        """
        timeout = min(settings.connect_timeout, remaining(deadline))
        if timeout <= 0:
            raise TransportTimeout(f"openpi server {endpoint}: no time left to connect")
        started = time.monotonic()
        try:
            websocket = connect(
                endpoint.url,
                compression=None,
                max_size=settings.limits.max_message_bytes,
                additional_headers=settings.headers(),
                open_timeout=timeout,
                ping_interval=settings.keepalive_interval,
                ping_timeout=settings.keepalive_timeout,
                close_timeout=settings.close_timeout,
                proxy=None,
                **_DIRECT,
            )
        except TimeoutError:
            raise TransportTimeout(
                f"openpi server {endpoint}: no WebSocket handshake within {timeout:g} s"
            ) from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (check api_key)" if status in (401, 403) else ""
            raise ConnectionFailed(
                f"openpi server {endpoint} rejected the WebSocket handshake: HTTP {status}{hint}",
                retryable=status >= 500,
            ) from None
        except (OSError, InvalidHandshake, WebSocketException) as exc:
            raise ConnectionFailed(
                f"cannot connect to openpi server {endpoint}: {_describe_os_error(exc)}", retryable=True
            ) from None
        try:
            frame = websocket.recv(timeout=max(0.0, timeout - (time.monotonic() - started)))
        except TimeoutError:
            _abort(websocket)
            raise TransportTimeout(f"openpi server {endpoint}: no metadata frame within {timeout:g} s") from None
        except ConnectionClosed as exc:
            raise ConnectionFailed(
                f"openpi server {endpoint} closed the connection before sending its metadata: {_describe_close(exc)}",
                retryable=True,
            ) from None
        if isinstance(frame, str):
            _abort(websocket)
            raise ProtocolError(f"openpi server {endpoint}: expected a binary metadata frame, got text {frame[:200]!r}")
        try:
            metadata = decode(frame, settings.limits)
        except ProtocolError:
            _abort(websocket)
            raise
        if not isinstance(metadata, Mapping):
            _abort(websocket)
            raise ProtocolError(f"openpi server {endpoint}: metadata frame is a {type(metadata).__name__}, not a map")
        return cls(websocket, endpoint, metadata, settings)

    def exchange(self, payload: bytes, deadline: float) -> bytes:
        """Send one packed observation and return the packed reply.

        Raises:
            TransportTimeout: no reply before ``deadline`` (the connection is aborted).
            ServerError: the server sent a traceback (text frame) and closed with 1011.
            ConnectionFailed: the connection broke.
            ProtocolError: the reply exceeded ``max_message_bytes``.
        """
        websocket = self.websocket
        reused = self.exchanges > 0
        self.exchanges += 1
        sent = False
        try:
            timeout = remaining(deadline)
            if timeout <= 0:
                raise TimeoutError
            with contextlib.suppress(OSError):
                websocket.socket.settimeout(timeout)
            websocket.send(payload)
            sent = True
            reply = websocket.recv(timeout=remaining(deadline))
        except TimeoutError:
            self.abort()
            stage = "reply" if sent else "send"
            raise TransportTimeout(
                f"openpi server {self.endpoint}: no {stage} within the timeout"
            ) from None
        except ConnectionClosed as exc:
            raise self._closed_error(exc, reused=reused, sent=sent) from None
        if isinstance(reply, str):
            raise self._server_error(reply, deadline)
        return reply

    def _closed_error(self, exc: ConnectionClosed, *, reused: bool, sent: bool) -> Exception:
        if isinstance(exc.__cause__, TimeoutError):
            return TransportTimeout(f"openpi server {self.endpoint}: sending the observation timed out")
        ours = exc.sent if exc.rcvd is None else None
        if ours is not None and ours.code == MESSAGE_TOO_BIG:
            return ProtocolError(
                f"openpi server {self.endpoint}: reply larger than max_message_bytes="
                f"{self.settings.limits.max_message_bytes}"
            )
        if ours is not None and ours.code == INTERNAL_ERROR and "keepalive" in ours.reason:
            return ConnectionFailed(
                f"openpi server {self.endpoint}: connection dropped: keepalive ping timeout (no pong within "
                f"{self.settings.keepalive_timeout} s; the server may be busy in a long inference: raise "
                "keepalive_timeout or timeout)",
                retryable=False,
            )
        return ConnectionFailed(
            f"openpi server {self.endpoint}: connection lost: {_describe_close(exc)}",
            retryable=reused or not sent,
        )

    def _server_error(self, text: str, deadline: float) -> ServerError:
        close = ""
        try:
            self.websocket.recv(timeout=min(self.settings.close_timeout, remaining(deadline)))
        except ConnectionClosed as exc:
            close = f" (close {_describe_close(exc)})"
        except TimeoutError:
            pass
        self.abort()
        last_line = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
        return ServerError(f"openpi server {self.endpoint} failed: {last_line}{close}", server_message=text)

    def close(self) -> None:
        """Close gracefully (waits at most ``close_timeout``). Idempotent."""
        with contextlib.suppress(Exception):
            self.websocket.close()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake. Idempotent."""
        _abort(self.websocket)


def _abort(websocket: ClientConnection) -> None:
    with contextlib.suppress(OSError):
        websocket.socket.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        websocket.close()


def _describe_close(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        cause = exc.__cause__
        return f"no close frame ({type(cause).__name__}: {cause})" if cause else "no close frame"
    side = "server" if exc.rcvd is not None else "client"
    reason = f" {frame.reason!r}" if frame.reason else ""
    return f"{side} sent code {frame.code}{reason}"


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
