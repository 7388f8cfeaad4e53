"""One WebSocket connection to an openpi server, used in lockstep: send one observation, receive
one reply. It is the transport kit's :class:`~arena_adapters.transport.SplitConnection` for openpi.

The connection has no thread of its own. The calling thread writes each frame and reads the reply,
so a reply costs no hand-off from a reader thread, which for one process sending many envs'
requests is most of a request's client time. websockets' sans-I/O
:class:`~websockets.client.ClientProtocol` does the handshake and the parsing, and answers the
server's pings and close; the request's binary frame is written here (its header and the masked
payload in one ``sendmsg``).

The server speaks first: right after the handshake it sends one binary frame, its packed metadata
map. An error in the server's ``infer`` arrives as a TEXT frame (the traceback) followed by close
code 1011; the connection is then finished and a new one must be opened.

Every wait is bounded by the call's :class:`~arena_adapters.transport.Deadline` as a total: the TCP
connect, the TLS and WebSocket handshakes, the metadata frame, the send and the reply. ``abort()``
from any thread shuts the socket down, which ends a blocked open or exchange at once.

Keepalive: while a reply is awaited, a ping goes out after ``keepalive_interval`` seconds without
data from the server, and no pong within ``keepalive_timeout`` drops the connection. A connection
idle in the pool reads what arrived meanwhile when it is next handed out (:attr:`~WebsocketConnection.closed`):
it answers the server's pings, and if the server closed it (its own keepalive gave up, or it
restarted), the pool opens a new one in its place, with no resend and no backoff.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import USER_AGENT
from websockets.protocol import State
from websockets.uri import parse_uri

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

from arena_adapters.errors import AdapterError, ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters.transport import Deadline, Endpoint, IdleCheck

MESSAGE_TOO_BIG = 1009
RECEIVE_BYTES = 1 << 18
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


@dataclass(frozen=True)
class ConnectionSettings:
    """How connections are opened and kept alive.

    Attributes:
        api_key: sent as ``Authorization: Api-Key <key>`` when set.
        connect_timeout: the longest TCP connect + handshakes + metadata frame, within a call's deadline.
        keepalive_interval: seconds without data from the server, while a reply is awaited, before
            a keepalive ping (``None``: no pings).
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

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, endpoint: Endpoint,
                 settings: ConnectionSettings) -> None:
        self.socket = sock
        self.protocol = protocol
        self.endpoint = endpoint
        self.settings = settings
        self.metadata: Mapping[str, Any] = {}
        self._events: deque[Frame] = deque(_frames_received(protocol))
        self._cause: BaseException | None = None  # what ended the stream, when not a close frame
        self._idle_check = IdleCheck()
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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.tls is not None:  # the TLS handshake runs below, with the socket registered
            sock = settings.tls.wrap_socket(sock, server_hostname=endpoint.host, do_handshake_on_connect=False)
        with opening.holding(sock):
            connection = cls(sock, _handshake(endpoint, settings, budget, sock), endpoint, settings)
            try:
                frame = connection._read_message(budget)
            except TimeoutError:
                connection.abort()
                raise TransportTimeout(
                    f"openpi server {endpoint}: no metadata frame within {budget.budget:g} s"
                ) from None
            except ConnectionClosed as exc:
                connection.abort()
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
            connection.abort()
            raise
        connection.metadata = metadata
        return connection

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
        with self._failures("send", deadline, sent=False):
            if deadline.expired:
                raise TimeoutError
            if not self._idle_check.recent:
                self._take_idle_input(deadline)
            if self.protocol.state is not State.OPEN:
                raise self._closed()
            self._write(_binary_frame(payload), deadline)

    def receive(self, deadline: Deadline) -> bytes:
        """The packed reply to the observation :meth:`send` sent, by ``deadline``.

        Raises:
            as :meth:`exchange`.
        """
        with self._failures("reply", deadline, sent=True):
            reply = self._read_message(deadline)
        if isinstance(reply, str):
            raise self._server_error(reply, deadline)
        return reply

    @property
    def closed(self) -> bool:
        """True when this connection cannot carry another request: aborted, closed by the server
        while it sat idle (its keepalive gave up, or it restarted), or sent a message nobody asked
        for. The kit's pool asks as it hands the connection out, and then opens a new one instead of
        spending a resend on it. Asking answers the pings that arrived meanwhile."""
        if self._aborted:
            return True
        try:
            deadline = Deadline.after(self.settings.close_timeout)
            self._take_idle_input(deadline)
        except (AdapterError, ConnectionClosed, OSError):
            return True
        self._idle_check.passed()
        return self.protocol.state is not State.OPEN

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake; from any thread. Idempotent."""
        self._aborted = True
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.socket.close()

    # ------------------------------------------------------------------ reading and writing

    def _read_message(self, deadline: Deadline) -> bytes | str:
        """The next data message (a text one decoded), reassembled from its frames; control
        frames are answered on the way, and a ping goes out while the server stays silent.

        Raises:
            TimeoutError: no whole message by ``deadline``.
            ConnectionClosed: the connection closed (or the reply was too large: ours, 1009).
            TransportError: no pong within ``keepalive_timeout`` (the connection is aborted).
        """
        fragments: list[bytes] = []
        text = False
        heard_at = time.monotonic()
        ping: tuple[bytes, float] | None = None
        while True:
            while self._events:
                frame = self._events.popleft()
                if frame.opcode in DATA_OPCODES:
                    if frame.opcode is not Opcode.CONT:
                        fragments, text = [], frame.opcode is Opcode.TEXT
                    fragments.append(bytes(frame.data))
                    if frame.fin:
                        data = fragments[0] if len(fragments) == 1 else b"".join(fragments)
                        return data.decode("utf-8", "replace") if text else data
                elif frame.opcode is Opcode.PONG and ping is not None and frame.data == ping[0]:
                    ping = None
            self._flush(deadline)
            if self.protocol.state is not State.OPEN:
                raise self._closed()
            wait = deadline.remaining()
            if wait <= 0:
                raise TimeoutError
            interval, patience = self.settings.keepalive_interval, self.settings.keepalive_timeout
            now = time.monotonic()
            if ping is not None and patience is not None:
                if now - ping[1] >= patience:
                    self.abort()
                    raise self._keepalive_error()
                wait = min(wait, ping[1] + patience - now)
            elif ping is None and interval is not None:
                if now - heard_at >= interval:
                    ping = (os.urandom(4), now)
                    self.protocol.send_ping(ping[0])
                    continue
                wait = min(wait, heard_at + interval - now)
            if self._receive_into_protocol(max(wait, 1e-4)):
                heard_at = time.monotonic()

    def _receive_into_protocol(self, timeout: float | None) -> bool:
        """Feed what the socket has (waiting up to ``timeout``; ``None``: not at all) to the
        protocol; True when data arrived. The end of the stream or a reset closes the protocol."""
        try:
            self.socket.settimeout(timeout if timeout is not None else 0.0)
            data = self.socket.recv(RECEIVE_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError, TimeoutError):
            return False
        except OSError as exc:  # reset, or shut down by abort()
            self._end_of_stream(exc)
            return False
        if not data:
            self._end_of_stream(None)
            return False
        self.protocol.receive_data(data)
        self._events.extend(_frames_received(self.protocol))
        return True

    def _take_idle_input(self, deadline: Deadline) -> None:
        """Read what arrived while the connection sat idle, without waiting, and write what that
        calls for: pongs to the server's pings, or our side of its close. A data message here is
        not a reply to anything: the connection is dropped (the request has not gone out)."""
        def stray() -> bool:
            return any(frame.opcode in DATA_OPCODES for frame in self._events)

        while not stray() and self.protocol.state is State.OPEN and not deadline.expired:
            if not self._receive_into_protocol(None):
                break
        if stray():
            self.abort()
            raise TransportError(
                f"openpi server {self.endpoint} sent a message nobody asked for; reconnecting", retryable=True
            )
        self._events.clear()
        self._flush(deadline)

    def _flush(self, deadline: Deadline) -> None:
        """Write what the protocol has to send (frames, or the end of our stream), by ``deadline``."""
        for data in self.protocol.data_to_send():
            if data:
                self._write([data], deadline)
            else:
                with contextlib.suppress(OSError):
                    self.socket.shutdown(socket.SHUT_WR)

    def _write(self, parts: list[bytes], deadline: Deadline) -> None:
        """Write ``parts`` in one go (one ``sendmsg`` where it can), by ``deadline``."""
        try:
            self.socket.settimeout(max(deadline.remaining(), 1e-3))
            if isinstance(self.socket, ssl.SSLSocket):  # no sendmsg
                for part in parts:
                    self.socket.sendall(part)
                return
            views = [memoryview(part) for part in parts]
            while views:
                sent = self.socket.sendmsg(views)
                while views and sent >= len(views[0]):
                    sent -= len(views.pop(0))
                if sent:
                    views[0] = views[0][sent:]
        except TimeoutError:  # an OSError too, but the deadline's
            raise
        except OSError as exc:
            self._end_of_stream(exc)
            raise self._closed() from None

    def _end_of_stream(self, cause: BaseException | None) -> None:
        self._cause = cause
        self.protocol.receive_eof()

    def _closed(self) -> ConnectionClosed:
        """The connection's end as websockets would raise it: the close frames each side sent."""
        protocol = self.protocol
        exc = ConnectionClosedError(protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent)
        exc.__cause__ = protocol.parser_exc or self._cause
        return exc

    # ------------------------------------------------------------------ errors

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
        return TransportError(
            f"openpi server {self.endpoint}: connection lost: {_describe_close(exc)}",
            retryable=not sent,
        )

    def _keepalive_error(self) -> TransportError:
        return TransportError(
            f"openpi server {self.endpoint}: connection dropped: keepalive ping timeout (no pong within "
            f"{self.settings.keepalive_timeout} s; the server may be busy in a long inference: raise "
            "keepalive_timeout or timeout)",
        )

    def _server_error(self, text: str, deadline: Deadline) -> ServerError:
        close = ""
        try:
            self._read_message(deadline.within(self.settings.close_timeout))
        except ConnectionClosed as exc:
            close = f" (close {_describe_close(exc)})"
        except (TimeoutError, TransportError):
            pass
        self.abort()
        last_line = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
        return ServerError(f"openpi server {self.endpoint} failed: {last_line}{close}", server_message=text)


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


def _frames_received(protocol: ClientProtocol) -> Iterator[Frame]:
    """The frames the protocol has parsed since it was last asked (the handshake's response left out)."""
    return (event for event in protocol.events_received() if isinstance(event, Frame))


def _binary_frame(payload: bytes) -> list[bytes]:
    """A final binary frame of ``payload`` as a client sends it (RFC 6455, 5.2): its header with
    a fresh masking key, and the masked payload; the payload is not copied again to join them."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    return [header + mask, apply_mask(payload, mask)]


def _handshake(endpoint: Endpoint, settings: ConnectionSettings, budget: Deadline,
               sock: socket.socket) -> ClientProtocol:
    """The TLS handshake (``wss://``) and the WebSocket one on ``sock``, by ``budget``; the
    protocol is OPEN after it (the frames that came with the response are still in it)."""
    protocol = ClientProtocol(parse_uri(endpoint.url), max_size=settings.max_message_bytes)
    request = protocol.connect()
    request.headers["User-Agent"] = USER_AGENT
    for name, value in (settings.headers() or {}).items():
        request.headers[name] = value
    protocol.send_request(request)
    try:
        sock.settimeout(max(budget.remaining(), 1e-3))
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()
        sock.sendall(b"".join(protocol.data_to_send()))
        while protocol.state is State.CONNECTING and protocol.handshake_exc is None:
            if budget.expired:
                raise TimeoutError
            sock.settimeout(max(budget.remaining(), 1e-3))
            data = sock.recv(RECEIVE_BYTES)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
                if protocol.handshake_exc is None:
                    raise ConnectionResetError("closed during the handshake")
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
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
    return protocol


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
