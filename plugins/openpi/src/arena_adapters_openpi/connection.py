"""One WebSocket connection to an openpi server, used in lockstep: send one observation, receive
one reply. It is the transport kit's :class:`~arena_adapters.transport.Connection` for openpi.

The server speaks first: right after the handshake it sends one binary frame, its packed metadata
map. An error in the server's ``infer`` arrives as a TEXT frame (the traceback) followed by close
code 1011; the connection is then finished and a new one must be opened.

Every wait is bounded by the call's :class:`~arena_adapters.transport.Deadline` as a total: the TCP
connect, the TLS and WebSocket handshakes, the metadata frame, the send and the reply. ``abort()``
from any thread shuts the socket down, which ends a blocked open or exchange at once.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from arena_adapters.errors import AdapterError, ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters.transport import Deadline, Endpoint

# websockets >= 17 warns unless a directly used connection is asked for explicitly.
_DIRECT: dict[str, Any] = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}

INTERNAL_ERROR = 1011
MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True)
class ConnectionSettings:
    """How connections are opened and kept alive.

    Attributes:
        api_key: sent as ``Authorization: Api-Key <key>`` when set.
        connect_timeout: the longest TCP connect + handshakes + metadata frame, within a call's deadline.
        keepalive_interval: seconds between keepalive pings (``None``: no pings).
        keepalive_timeout: seconds to wait for a pong before dropping the connection (``None``: forever).
        close_timeout: seconds to wait for the server's side of a closing handshake.
        max_message_bytes: the largest frame accepted (the socket refuses larger ones from their header).
        tls: the TLS context for ``wss://`` endpoints (``None`` for ``ws://``).
    """

    api_key: str | None = None
    connect_timeout: float = 10.0
    keepalive_interval: float | None = 20.0
    keepalive_timeout: float | None = 20.0
    close_timeout: float = 1.0
    max_message_bytes: int = 64 * 2**20
    tls: ssl.SSLContext | None = None

    def headers(self) -> dict[str, str] | None:
        """The extra handshake headers."""
        return {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None

    def __repr__(self) -> str:  # the key never shows in logs or tracebacks
        key = "'***'" if self.api_key else "None"
        return f"ConnectionSettings(api_key={key}, connect_timeout={self.connect_timeout})"


def tls_context(endpoint: Endpoint, ca_file: str | None, verify: bool) -> ssl.SSLContext | None:
    """The TLS context for ``endpoint``: ``None`` for ``ws://``; for ``wss://`` the system's trust
    store, or ``ca_file``; ``verify=False`` accepts any certificate (testing only)."""
    if not endpoint.is_secure:
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class WebsocketConnection:
    """An open connection whose metadata frame was read. Build it with :meth:`open`.

    Attributes:
        metadata: the server's metadata frame, decoded.
    """

    def __init__(self, websocket: ClientConnection, endpoint: Endpoint, metadata: Mapping[str, Any],
                 settings: ConnectionSettings) -> None:
        self.websocket = websocket
        self.endpoint = endpoint
        self.metadata = metadata
        self.settings = settings
        self._aborted = False

    @classmethod
    def open(
        cls,
        endpoint: Endpoint,
        settings: ConnectionSettings,
        deadline: Deadline,
        decode: Callable[[bytes], Any],
        opening: OpeningSockets,
    ) -> WebsocketConnection:
        """Connect, complete the handshake and read the metadata frame by ``deadline`` (and
        ``settings.connect_timeout``). The socket is registered in ``opening`` meanwhile, so that
        closing the transport ends a hanging open at once.

        Raises:
            TransportTimeout: no connection, handshake or metadata in time.
            TransportError: refused or reset (retryable), the handshake was rejected (retryable
                for HTTP 5xx), or the transport was closed.
            ProtocolError: the metadata frame is not a packed map.
        """
        budget = deadline.within(settings.connect_timeout)
        if budget.expired:
            raise TransportTimeout(f"openpi server {endpoint}: no time left to connect")
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=budget.remaining())
        except TimeoutError:
            raise TransportTimeout(f"openpi server {endpoint}: no TCP connection within {budget.budget:g} s") from None
        except OSError as exc:
            raise TransportError(
                f"cannot connect to openpi server {endpoint}: {_describe_os_error(exc)}", retryable=True
            ) from None
        with opening.holding(sock):
            websocket = _handshake(endpoint, settings, budget, sock)
            try:
                frame = websocket.recv(timeout=budget.remaining())
            except TimeoutError:
                _abort(websocket)
                raise TransportTimeout(
                    f"openpi server {endpoint}: no metadata frame within {budget.budget:g} s"
                ) from None
            except ConnectionClosed as exc:
                raise TransportError(
                    f"openpi server {endpoint} closed the connection before sending its metadata: "
                    f"{_describe_close(exc)}",
                    retryable=True,
                ) from None
        try:
            if isinstance(frame, str):
                raise ProtocolError(
                    f"openpi server {endpoint}: expected a binary metadata frame, got text {frame[:200]!r}"
                )
            metadata = decode(frame)
            if not isinstance(metadata, Mapping):
                raise ProtocolError(
                    f"openpi server {endpoint}: metadata frame is a {type(metadata).__name__}, not a map"
                )
        except BaseException:
            _abort(websocket)
            raise
        return cls(websocket, endpoint, metadata, settings)

    def exchange(self, payload: bytes, deadline: Deadline) -> bytes:
        """Send one packed observation and return the packed reply, by ``deadline`` in total.

        Raises:
            TransportTimeout: no reply in time (the connection is aborted: a late reply would
                break the lockstep).
            ServerError: the server sent a traceback (text frame) and closed with 1011.
            TransportError: the connection broke; ``retryable`` only when it was found closed
                before the observation went out.
            ProtocolError: the reply exceeded ``max_message_bytes``.
        """
        self.send(payload, deadline)
        return self.receive(deadline)

    def send(self, payload: bytes, deadline: Deadline) -> None:
        """Send one packed observation by ``deadline``; :meth:`receive` reads the reply.

        Raises:
            TransportTimeout: it could not be sent in time (the connection is aborted).
            TransportError: the connection broke; ``retryable`` when it was found closed before
                the observation went out.
        """
        websocket = self.websocket
        with self._failures("send", deadline, sent=False):
            if deadline.expired:
                raise TimeoutError
            with contextlib.suppress(OSError):
                websocket.socket.settimeout(max(deadline.remaining(), 1e-3))  # sendall: a total bound
            websocket.send(payload)
            with contextlib.suppress(OSError):
                websocket.socket.settimeout(None)

    def receive(self, deadline: Deadline) -> bytes:
        """The packed reply to the observation :meth:`send` sent, by ``deadline``.

        Raises:
            as :meth:`exchange`.
        """
        with self._failures("reply", deadline, sent=True):
            reply = self.websocket.recv(timeout=deadline.remaining())
        if isinstance(reply, str):
            raise self._server_error(reply, deadline)
        return reply

    @contextlib.contextmanager
    def _failures(self, stage: str, deadline: Deadline, *, sent: bool) -> Iterator[None]:
        """A timeout or a closed connection in the block as the typed error; the connection is
        aborted (a late reply would break the lockstep)."""
        try:
            yield
        except TimeoutError:
            self.abort()
            raise TransportTimeout(
                f"openpi server {self.endpoint}: no {stage} within the deadline of {deadline.budget:g} s"
            ) from None
        except ConnectionClosed as exc:
            error = self._closed_error(exc, sent=sent)
            self.abort()
            raise error from None

    def _closed_error(self, exc: ConnectionClosed, *, sent: bool) -> AdapterError:
        if self._aborted:
            return TransportError(f"openpi server {self.endpoint}: the request was aborted (transport closed)")
        ours = exc.sent if exc.rcvd is None else None
        if ours is not None and ours.code == MESSAGE_TOO_BIG:
            return ProtocolError(
                f"openpi server {self.endpoint}: reply larger than max_message_bytes="
                f"{self.settings.max_message_bytes:,}"
            )
        if ours is not None and ours.code == INTERNAL_ERROR and "keepalive" in ours.reason:
            return TransportError(
                f"openpi server {self.endpoint}: connection dropped: keepalive ping timeout (no pong within "
                f"{self.settings.keepalive_timeout} s; the server may be busy in a long inference: raise "
                "keepalive_timeout or timeout)",
            )
        if not sent and isinstance(exc.__cause__, TimeoutError):
            return TransportTimeout(f"openpi server {self.endpoint}: sending the observation timed out")
        return TransportError(
            f"openpi server {self.endpoint}: connection lost: {_describe_close(exc)}",
            retryable=not sent,
        )

    def _server_error(self, text: str, deadline: Deadline) -> ServerError:
        close = ""
        try:
            self.websocket.recv(timeout=min(self.settings.close_timeout, deadline.remaining()))
        except ConnectionClosed as exc:
            close = f" (close {_describe_close(exc)})"
        except TimeoutError:
            pass
        self.abort()
        last_line = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
        return ServerError(f"openpi server {self.endpoint} failed: {last_line}{close}", server_message=text)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake; from any thread. Idempotent."""
        self._aborted = True
        _abort(self.websocket)


class OpeningSockets:
    """The sockets of connections being opened, so that closing the transport can end them."""

    def __init__(self) -> None:
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.closed = False

    @contextlib.contextmanager
    def holding(self, sock: socket.socket) -> Any:
        """Register ``sock`` while the block runs; refuse at once when closed."""
        with self._lock:
            closed = self.closed
            if not closed:
                self._sockets.add(sock)
        if closed:
            sock.close()
            raise TransportError("the openpi transport is closed")
        try:
            yield
        except (TransportError, ProtocolError):
            if self.closed:
                raise TransportError("the openpi transport was closed while connecting") from None
            raise
        finally:
            with self._lock:
                self._sockets.discard(sock)

    def close(self) -> None:
        """Shut down every socket being opened; later opens fail at once. Idempotent."""
        with self._lock:
            self.closed = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _handshake(endpoint: Endpoint, settings: ConnectionSettings, budget: Deadline,
               sock: socket.socket) -> ClientConnection:
    try:
        websocket: ClientConnection = connect(
            endpoint.url,
            sock=sock,
            ssl=settings.tls,
            server_hostname=endpoint.host if settings.tls is not None else None,
            compression=None,
            max_size=settings.max_message_bytes,
            additional_headers=settings.headers(),
            open_timeout=max(budget.remaining(), 1e-3),
            ping_interval=settings.keepalive_interval,
            ping_timeout=settings.keepalive_timeout,
            close_timeout=settings.close_timeout,
            **_DIRECT,
        )
        return websocket
    except TimeoutError:
        sock.close()
        raise TransportTimeout(
            f"openpi server {endpoint}: no WebSocket handshake within {budget.budget:g} s"
        ) from None
    except InvalidStatus as exc:
        sock.close()
        status = exc.response.status_code
        hint = " (check api_key)" if status in (401, 403) else ""
        raise TransportError(
            f"openpi server {endpoint} rejected the WebSocket handshake: HTTP {status}{hint}",
            retryable=status >= 500,
        ) from None
    except ssl.SSLError as exc:
        sock.close()
        raise TransportError(f"openpi server {endpoint}: TLS handshake failed: {exc}") from None
    except (OSError, InvalidHandshake, WebSocketException) as exc:
        sock.close()
        raise TransportError(
            f"cannot connect to openpi server {endpoint}: {_describe_os_error(exc)}", retryable=True
        ) from None


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
