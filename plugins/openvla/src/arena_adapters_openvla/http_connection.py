"""One HTTP/1.1 keep-alive connection whose exchanges end by their deadline and can be aborted.

:class:`HttpConnection` is the :class:`~arena_adapters.transport.Connection` of the OpenVLA
transport. It speaks just the HTTP an OpenVLA ``deploy.py`` server (FastAPI under uvicorn), or a
proxy in front of one, needs: a request with a ``Content-Length`` body, a reply framed by
``Content-Length``, chunked transfer coding or the end of the connection; plain TCP or TLS.

What it promises, and why it is written on a bare socket rather than an HTTP library:

- the deadline bounds the whole exchange: every ``recv`` and ``send`` waits at most for the time
  that is left, so a server that trickles its reply a byte at a time still ends in
  :class:`~arena_adapters.errors.TransportTimeout` by the deadline (a library's timeout bounds
  each read instead);
- few system calls, each of which lets another thread take the GIL (and must wait to get it back):
  a plain TCP socket stays non-blocking and is waited on with ``poll`` only when it is not ready,
  instead of a socket timeout, which costs a ``poll`` and an ``ioctl`` before every ``send`` and
  ``recv``; an exchange is about four calls (the idle check, ``sendmsg``, ``poll``, ``recv``);
- a reply larger than ``max_reply_bytes`` is refused from its ``Content-Length`` before the body
  is read, and a body without one is cut off as soon as it grows past the limit;
- :meth:`HttpConnection.abort`, from any thread, shuts the socket down, so that a blocked
  exchange ends at once with a :class:`~arena_adapters.errors.TransportError`;
- an exchange can also be made in two calls, :meth:`HttpConnection.send` and
  :meth:`HttpConnection.receive` (a :class:`~arena_adapters.transport.SplitConnection`), so that
  one thread keeps many requests in flight;
- only a failure before the request could have reached the server (refused, unreachable, an
  idle connection that the server closed, a request not sent completely) is ``retryable``; once
  the request is sent, a dropped connection is reported, never resent.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from arena_adapters.errors import AdapterError, ProtocolError, TransportError, TransportTimeout
from arena_adapters.transport import Deadline, Endpoint, IdleCheck

MAX_HEADER_BYTES = 64 * 1024
"""The most bytes of status line and headers a reply may have."""
MAX_HEADERS = 100
"""The most header lines a reply may have."""
ERROR_BODY_BYTES = 64 * 1024
"""The most bytes of an error reply's body read for its message."""

_RECV_BYTES = 256 * 1024
_SEND_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request: ``method`` (``POST``/``GET``), ``path`` (from the endpoint's base path) and body."""

    method: str
    path: str
    body: bytes = b""


@dataclass(frozen=True)
class HttpReply:
    """A reply that is not 2xx, handed to the connection's ``status_error`` to make the error."""

    url: str
    status: int
    reason: str
    body: bytes


StatusError = Callable[[HttpReply], AdapterError]
"""Makes the error raised for a reply whose status is not 2xx."""


def default_status_error(reply: HttpReply) -> AdapterError:
    """A :class:`ProtocolError` naming the URL, the status and the start of the body."""
    excerpt = reply.body[:300].decode("utf-8", "replace").strip()
    text = f"{reply.url} answered HTTP {reply.status} {reply.reason}".rstrip()
    return ProtocolError(text + (f": {excerpt}" if excerpt else ""))


def tls_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """The TLS settings of ``https`` endpoints: the system's CAs (or ``ca_file``), host names checked.

    ``verify=False`` accepts any certificate (a test server's self-signed one, say).
    """
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        from arena_adapters.errors import ConfigError

        raise ConfigError(f"option 'ca_file': cannot read CA certificates from {ca_file!r}: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class HttpConnection:
    """A keep-alive HTTP/1.1 connection to one server, used by one request at a time.

    Args:
        endpoint: the server (``http``/``https``); requests' paths are appended to its path.
        headers: sent with every request (``Content-Type``, ``Authorization`` ...).
        max_reply_bytes: the largest reply body accepted.
        tls: the TLS context for ``https`` endpoints.
        status_error: makes the error for a non-2xx reply.

    Use :meth:`open` to connect; :meth:`exchange` reconnects by itself when the server closed the
    connection while it was idle.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        headers: Mapping[str, str],
        max_reply_bytes: int,
        tls: ssl.SSLContext | None = None,
        status_error: StatusError = default_status_error,
    ) -> None:
        self.endpoint = endpoint
        self.max_reply_bytes = max_reply_bytes
        self.status_error = status_error
        self._tls = tls
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        lines = [f"Host: {host}:{endpoint.port}", "User-Agent: arena-adapters", "Accept: */*"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._header_lines = "".join(line + "\r\n" for line in lines).encode("latin-1")
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._busy = False
        self._aborted = False
        self._idle_check = IdleCheck()
        self._sent: HttpRequest | None = None  # sent, its reply not read yet
        self.connects = 0
        """How many times a socket was connected (for tests and monitoring)."""

    @classmethod
    def open(
        cls,
        endpoint: Endpoint,
        deadline: Deadline,
        headers: Mapping[str, str],
        max_reply_bytes: int,
        tls: ssl.SSLContext | None = None,
        status_error: StatusError = default_status_error,
    ) -> HttpConnection:
        """A connection that is connected now (so that a dead server shows at once)."""
        connection = cls(endpoint, headers, max_reply_bytes, tls, status_error)
        connection._begin()
        try:
            connection._connect(deadline)
        finally:
            connection._end()
        return connection

    # ---------------------------------------------------------------------------- the exchange

    def exchange(self, payload: HttpRequest, deadline: Deadline) -> bytes:
        """Send ``payload`` and return the 2xx reply's body, no later than ``deadline``.

        Raises:
            TransportTimeout: the deadline passed (connecting, sending or waiting for the reply).
            TransportError: the connection failed or was aborted; ``retryable`` only when the
                request cannot have reached the server.
            ProtocolError: a malformed reply, or one over ``max_reply_bytes``; or whatever
                ``status_error`` makes of a non-2xx reply.
        """
        self.send(payload, deadline)
        return self.receive(deadline)

    def send(self, payload: HttpRequest, deadline: Deadline) -> None:
        """Send ``payload`` no later than ``deadline`` (reconnecting first when the server closed the
        connection while it was idle); :meth:`receive` reads the reply.

        Raises:
            as :meth:`exchange`; ``retryable`` when the request did not go out whole.
        """
        self._begin()
        try:
            if self._sent is not None:  # its reply would be taken for this request's
                raise TransportError(f"{self.url}: the reply to the previous request was not read")
            idle_checked = self._idle_check.recent
            if self._sock is None or (not idle_checked and _has_input(self._sock)):
                self._close_socket()  # closed by the server while idle: nothing was sent on it
                self._connect(deadline)
            self._send(payload, deadline)
            self._sent = payload
        finally:
            self._end()

    def receive(self, deadline: Deadline) -> bytes:
        """The 2xx reply's body to the request :meth:`send` sent, no later than ``deadline``.

        Raises:
            as :meth:`exchange`; TransportError when no request was sent.
        """
        self._begin()
        try:
            payload, self._sent = self._sent, None
            if payload is None:
                raise TransportError(f"{self.url}: no request was sent to read a reply to")
            return self._receive(payload, deadline)
        finally:
            self._end()

    def abort(self) -> None:
        """Shut the socket down: a blocked :meth:`exchange` ends at once with a TransportError.
        Final and idempotent; callable from any thread."""
        with self._lock:
            self._aborted = True
            sock = self._sock
            if not self._busy:
                self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            if not self._busy:
                sock.close()

    @property
    def closed(self) -> bool:
        """True when this connection cannot carry another request: aborted, or closed by the server
        (``Connection: close``, or while idle). The kit's pool then opens a new one."""
        sock = self._sock
        if self._aborted or sock is None:
            return True
        if self._busy:
            return False
        if _has_input(sock):
            return True
        self._idle_check.passed()
        return False

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return self.endpoint.url

    # ------------------------------------------------------------------------------ internals

    def _begin(self) -> None:
        with self._lock:
            if self._aborted:
                raise TransportError(f"connection to {self.url} was closed")
            self._busy = True

    def _end(self) -> None:
        with self._lock:
            self._busy = False
            if self._aborted:
                self._close_socket()

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _failure(self, what: str, exc: BaseException, *, retryable: bool = False) -> TransportError:
        if self._aborted:
            return TransportError(f"{what} {self.url}: cancelled (the transport was closed)")
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return TransportError(f"{what} {self.url} failed: {detail}", retryable=retryable)

    def _connect(self, deadline: Deadline) -> None:
        host, port = self.endpoint.host, self.endpoint.port
        try:
            addresses = _resolve(host, port, deadline)
        except TimeoutError:
            raise TransportTimeout(f"cannot connect to {self.url}: no address for {host!r} within "
                                   f"{deadline.budget:g} s") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.url}: {exc}", retryable=True) from None
        last: OSError | None = None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            with self._lock:
                if self._aborted:
                    sock.close()
                    raise TransportError(f"connection to {self.url} was closed")
                self._sock = sock  # from here on abort() can end the connect
            try:
                sock.settimeout(_left(deadline))
                sock.connect(address)
            except TimeoutError:
                self._close_socket()
                raise TransportTimeout(f"cannot connect to {self.url} within {deadline.budget:g} s") from None
            except OSError as exc:
                self._close_socket()
                if self._aborted:
                    raise self._failure("connecting to", exc) from None
                last = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                self._start_tls(sock, deadline)
            else:
                sock.setblocking(False)  # waited on by _wait_until_ready
            self.connects += 1
            return
        reason = "connection refused" if isinstance(last, ConnectionRefusedError) else str(last)
        raise TransportError(f"cannot connect to {self.url}: {reason}", retryable=True)

    def _start_tls(self, sock: socket.socket, deadline: Deadline) -> None:
        assert self._tls is not None
        sock.setblocking(False)
        try:
            wrapped = self._tls.wrap_socket(sock, server_hostname=self.endpoint.host, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            raise self._failure("TLS with", exc) from None
        with self._lock:
            self._sock = wrapped
        while True:
            try:
                wrapped.do_handshake()
                return
            except ssl.SSLWantReadError:
                ready = select.select([wrapped], [], [], _left(deadline))[0]
            except ssl.SSLWantWriteError:
                ready = select.select([], [wrapped], [], _left(deadline))[1]
            except ssl.SSLCertVerificationError as exc:
                raise TransportError(
                    f"TLS handshake with {self.url} failed: {exc.verify_message or exc} (trust its certificate with "
                    f"the ca_file option, or set verify=false for a test server)"
                ) from None
            except (OSError, ValueError) as exc:
                raise self._failure("TLS handshake with", exc) from None
            if not ready:
                raise TransportTimeout(f"TLS handshake with {self.url}: no answer within {deadline.budget:g} s")

    def _send(self, payload: HttpRequest, deadline: Deadline) -> None:
        sock = self._sock
        assert sock is not None
        head = (f"{payload.method} {self.endpoint.path}{payload.path} HTTP/1.1\r\n"
                f"Content-Length: {len(payload.body)}\r\n").encode("latin-1") + self._header_lines + b"\r\n"
        try:
            if _with_timeout(sock) or not hasattr(sock, "sendmsg"):  # TLS, Windows: no scatter/gather
                _send_all(sock, memoryview(head + payload.body), deadline)
            else:  # the head and the body in one system call, without joining them
                _sendmsg_all(sock, head, memoryview(payload.body), deadline)
        except TimeoutError:
            raise TransportTimeout(f"{self.url}: could not send the request within {deadline.budget:g} s") from None
        except OSError as exc:
            # The request did not reach the server whole, so the server cannot have run it.
            raise self._failure("sending to", exc, retryable=True) from None

    def _receive(self, payload: HttpRequest, deadline: Deadline) -> bytes:
        reader = _Reader(self, deadline)
        try:
            while True:
                status, reason, version = _status_line(reader.line(self.url))
                headers = _headers(reader, self.url)
                if status >= 200 or status == 101:
                    break
            keep_alive = _keeps_alive(version, headers)
            if not 200 <= status < 300:
                body = self._body(reader, headers, status, payload, min(self.max_reply_bytes, ERROR_BODY_BYTES),
                                  truncate=True)
                self._close_socket()
                raise self.status_error(HttpReply(self.url + payload.path, status, reason, body))
            body = self._body(reader, headers, status, payload, self.max_reply_bytes, truncate=False)
        except TimeoutError:
            raise TransportTimeout(f"no reply from {self.url} within {deadline.budget:g} s") from None
        except AdapterError:
            raise
        except OSError as exc:
            raise self._failure("the reply from", exc) from None
        if not keep_alive or reader.closed or reader.pending:
            self._close_socket()
        return body

    def _body(self, reader: _Reader, headers: dict[str, str], status: int, payload: HttpRequest, limit: int,
              *, truncate: bool) -> bytes:
        if payload.method == "HEAD" or status in (204, 304):
            return b""
        what = f"reply from {self.url}{payload.path}"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _chunked(reader, limit, what, truncate)
        length_text = headers.get("content-length")
        if length_text is not None:
            length = _content_length(length_text, what)
            if length > limit:
                if truncate:
                    return reader.up_to(limit)
                raise ProtocolError(f"{what}: Content-Length {length:,} exceeds max_message_bytes={limit:,}")
            return reader.exactly(length)
        return reader.until_closed(limit, what, truncate)


class _Reader:
    """Buffered reads from the connection's socket, each waiting only for the time left."""

    def __init__(self, connection: HttpConnection, deadline: Deadline) -> None:
        assert connection._sock is not None
        self._connection = connection
        self._sock = connection._sock
        self._deadline = deadline
        self._buffer = bytearray()
        self._received = 0
        self.closed = False

    @property
    def pending(self) -> bool:
        """True when bytes beyond the reply arrived (the connection is then not reused)."""
        return bool(self._buffer)

    def _fill(self) -> bool:
        """Read more; False at the end of the stream."""
        if self.closed:
            return False
        sock = self._sock
        if _with_timeout(sock):
            sock.settimeout(_left(self._deadline))
            chunk = sock.recv(_RECV_BYTES)
        else:
            if not self._received:  # just after the request: the reply cannot be there yet
                _wait_until_ready(sock, select.POLLIN, self._deadline)
            while True:
                try:
                    chunk = sock.recv(_RECV_BYTES)
                    break
                except BlockingIOError:
                    _wait_until_ready(sock, select.POLLIN, self._deadline)
        if not chunk:
            self.closed = True
            return False
        self._received += len(chunk)
        self._buffer += chunk
        return True

    def _eof(self) -> TransportError:
        connection = self._connection
        if connection._aborted:
            return TransportError(f"the request to {connection.url} was cancelled (the transport was closed)")
        if self._received == 0:
            return TransportError(
                f"{connection.url} closed the connection without replying; the request is not resent, as the "
                f"server may have run it"
            )
        return TransportError(f"{connection.url} closed the connection in the middle of its reply")

    def line(self, url: str) -> bytes:
        """One CRLF-terminated line (without it)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return line.rstrip(b"\r")
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise ProtocolError(f"{url}: a reply header line is longer than {MAX_HEADER_BYTES:,} bytes")
            if not self._fill():
                raise self._eof()

    def exactly(self, size: int) -> bytes:
        """The next ``size`` bytes."""
        while len(self._buffer) < size:
            if not self._fill():
                raise self._eof()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def up_to(self, size: int) -> bytes:
        """At most ``size`` bytes, as many as come before the stream ends."""
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def until_closed(self, limit: int, what: str, truncate: bool) -> bytes:
        """Everything up to the end of the stream; refused past ``limit`` (or cut there)."""
        while self._fill():
            if len(self._buffer) > limit:
                if truncate:
                    return bytes(self._buffer[:limit])
                raise ProtocolError(f"{what}: more than max_message_bytes={limit:,} bytes")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _chunked(reader: _Reader, limit: int, what: str, truncate: bool) -> bytes:
    body = bytearray()
    while True:
        size_text = reader.line(what).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise ProtocolError(f"{what}: malformed chunk size {size_text[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            while reader.line(what):  # trailers, up to the empty line
                pass
            return bytes(body)
        if len(body) + size > limit:
            if truncate:
                return bytes(body) + reader.up_to(limit - len(body))
            raise ProtocolError(f"{what}: a chunked body over max_message_bytes={limit:,} bytes")
        body += reader.exactly(size)
        if reader.exactly(2) != b"\r\n":
            raise ProtocolError(f"{what}: a chunk does not end with CRLF")


def _send_all(sock: socket.socket, data: memoryview, deadline: Deadline) -> None:
    sent = 0
    while sent < len(data):
        sock.settimeout(_left(deadline))
        sent += sock.send(data[sent:sent + _SEND_BYTES])


def _sendmsg_all(sock: socket.socket, head: bytes, body: memoryview, deadline: Deadline) -> None:
    """Send ``head`` then ``body`` with ``sendmsg`` (scatter/gather) on a non-blocking socket,
    waiting for room only when it has none."""
    sent = 0
    total = len(head) + len(body)
    while sent < total:
        try:
            if sent < len(head):
                sent += sock.sendmsg([memoryview(head)[sent:], body[:_SEND_BYTES]])
            else:
                start = sent - len(head)
                sent += sock.sendmsg([body[start:start + _SEND_BYTES]])
        except BlockingIOError:
            _wait_until_ready(sock, select.POLLOUT, deadline)


def _with_timeout(sock: socket.socket) -> bool:
    """True for a socket used with a timeout per call: TLS (its reads may need writes and back), and
    one that :func:`_send_all` has set a timeout on."""
    return isinstance(sock, ssl.SSLSocket) or sock.gettimeout() != 0.0


def _wait_until_ready(sock: socket.socket, events: int, deadline: Deadline) -> None:
    """Wait until a non-blocking socket is ready for ``events`` (or closed, or broken); TimeoutError
    when the deadline comes first."""
    if not hasattr(select, "poll"):  # pragma: no cover - platforms without poll
        reading = events == select.POLLIN
        ready = select.select([sock] if reading else [], [] if reading else [sock], [sock], _left(deadline))
        if not any(ready):
            raise TimeoutError("deadline passed")
        return
    poller = select.poll()
    poller.register(sock, events)
    if not poller.poll(math.ceil(_left(deadline) * 1000)):
        raise TimeoutError("deadline passed")


def _status_line(line: bytes) -> tuple[int, str, str]:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP reply: {line[:80]!r}")
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    return int(parts[1]), reason, parts[0].decode("ascii")


def _headers(reader: _Reader, url: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    last = ""
    for _ in range(MAX_HEADERS + 1):
        line = reader.line(url)
        if not line:
            return headers
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise ProtocolError(f"{url}: reply headers exceed {MAX_HEADER_BYTES:,} bytes")
        if line[:1] in (b" ", b"\t") and last:  # an obsolete folded continuation line
            headers[last] += " " + line.strip().decode("latin-1")
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise ProtocolError(f"{url}: malformed reply header {line[:80]!r}")
        last = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[last] = f"{headers[last]}, {text}" if last in headers else text
    raise ProtocolError(f"{url}: more than {MAX_HEADERS} reply headers")


def _content_length(text: str, what: str) -> int:
    values = {value.strip() for value in text.split(",")}
    value = values.pop() if len(values) == 1 else ""
    if not value.isdigit() or len(value) > 18:
        raise ProtocolError(f"{what}: invalid Content-Length {text[:40]!r}")
    return int(value)


def _keeps_alive(version: str, headers: Mapping[str, str]) -> bool:
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _has_input(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: the server closed it (or broke it)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - platforms without poll


def _left(deadline: Deadline) -> float:
    remaining = deadline.remaining()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _resolve(host: str, port: int, deadline: Deadline) -> list[tuple[Any, ...]]:
    """The addresses of ``host``; a name lookup runs on a daemon thread so the deadline bounds it."""
    flags = socket.AI_NUMERICHOST
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    except socket.gaierror:
        pass
    result: Future[list[tuple[Any, ...]]] = Future()

    def lookup() -> None:
        try:
            result.set_result(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:
            result.set_exception(exc)

    threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True).start()
    try:
        return result.result(timeout=_left(deadline))
    except FutureTimeout:
        raise TimeoutError(f"no address for {host!r} in time") from None
    except Exception as exc:
        raise OSError(f"cannot resolve {host!r}: {exc}") from None
