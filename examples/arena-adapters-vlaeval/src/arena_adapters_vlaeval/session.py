"""One vla-eval session: a WebSocket connection with its HELLO handshake, its message counter and
its episode state.

A vla-eval model server keeps per-connection state (the session: its episode, step counter and
action-chunk buffer), so a client holds one session per env. On a session the client speaks first:
``HELLO`` (the server answers ``HELLO`` with its name, action spec and observation params), then
``EPISODE_START``, ``OBSERVATION`` -> ``ACTION`` (or ``ERROR``) in lockstep, ``EPISODE_END``. The
server answers nothing to ``EPISODE_START``/``EPISODE_END``, except an ``ERROR`` carrying the
``seq`` of an ``EPISODE_START`` that failed.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from arena_adapters import plugin as ap
from arena_adapters_vlaeval import __version__, codec

# websockets >= 17 warns unless a directly used connection is asked for explicitly.
_DIRECT: dict[str, Any] = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
MESSAGE_TOO_BIG = 1009
CLIENT_NAME = f"arena-adapters-vlaeval {__version__}"


class Session:
    """An open session whose HELLO was answered. Build it with :meth:`open`; one request at a time.

    Attributes:
        server_info: the server's HELLO payload (``model_server``, ``action_spec``, ...).
        in_episode: True between an ``EPISODE_START`` sent and the next ``EPISODE_END``.
        steps: observations sent in the current episode.
    """

    def __init__(self, websocket: ClientConnection, url: str, limits: ap.DecodeLimits,
                 image_format: codec.ImageFormat) -> None:
        self.websocket = websocket
        self.url = url
        self.limits = limits
        self.image_format = image_format
        self.server_info: dict[str, Any] = {}
        self.in_episode = False
        self.steps = 0
        self.episode_started = 0.0
        self.lock = threading.Lock()
        self._seq = 0
        self._start_seq = -1
        self._sent_any = False

    @classmethod
    def open(cls, url: str, deadline: ap.Deadline, *, limits: ap.DecodeLimits,
             image_format: codec.ImageFormat = "raw", hello: dict[str, Any] | None = None) -> Session:
        """Connect and complete the HELLO handshake by ``deadline`` (:meth:`connect` + :meth:`handshake`)."""
        session = cls.connect(url, deadline, limits=limits, image_format=image_format)
        session.handshake(deadline, hello)
        return session

    @classmethod
    def connect(cls, url: str, deadline: ap.Deadline, *, limits: ap.DecodeLimits,
                image_format: codec.ImageFormat = "raw") -> Session:
        """Open the WebSocket by ``deadline`` (no HELLO yet).

        Raises:
            TransportTimeout: no connection in time.
            TransportError: refused (``retryable``), or the handshake was rejected.
        """
        timeout = deadline.remaining()
        if timeout <= 0:
            raise ap.TransportTimeout(f"no time left to connect to {url}")
        try:
            websocket = connect(url, compression=None, max_size=limits.max_message_bytes, open_timeout=timeout,
                                ping_interval=None, close_timeout=0.2, proxy=None, **_DIRECT)
        except TimeoutError:
            raise ap.TransportTimeout(f"no WebSocket handshake with {url} within {deadline.budget:g} s") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ap.TransportError(f"{url} rejected the WebSocket handshake: HTTP {status}",
                                    retryable=status == 503) from None
        except ConnectionRefusedError:
            raise ap.TransportError(f"connection to {url} refused (is the model server running?)",
                                    retryable=True) from None
        except (OSError, InvalidHandshake, WebSocketException) as exc:
            raise ap.TransportError(f"cannot connect to {url}: {type(exc).__name__}: {exc}", retryable=True) from None
        return cls(websocket, url, limits, image_format)

    def handshake(self, deadline: ap.Deadline, hello: dict[str, Any] | None = None) -> None:
        """Send HELLO and read the server's HELLO into :attr:`server_info`; aborts the session on failure.

        Raises:
            TransportTimeout: no HELLO reply in time.
            ServerError, ProtocolError: the reply was an error or broke the protocol.
        """
        try:
            payload = {"harness_version": CLIENT_NAME, "protocol_version": codec.PROTOCOL_VERSION, **(hello or {})}
            seq = self.send(codec.HELLO, payload, deadline)
            reply = self.receive(deadline, "HELLO reply")
            if reply.type == codec.ERROR:
                raise ap.ServerError(f"the vla-eval server refused HELLO: {_error_text(reply)}", _error_text(reply))
            if reply.type != codec.HELLO:
                raise ap.ProtocolError(f"expected a HELLO reply, got {reply.type}")
            if reply.seq != seq:
                raise ap.ProtocolError(f"HELLO reply has seq {reply.seq}, the HELLO had {seq}")
            self.server_info = reply.payload
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------------- messages

    def send(self, kind: str, payload: dict[str, Any], deadline: ap.Deadline) -> int:
        """Send one message; returns its ``seq``.

        Raises:
            TransportError: the connection is closed (``retryable`` when nothing was sent on it yet
                or it was found closed before this message went out).
            TransportTimeout: the send did not complete by the deadline.
        """
        self._seq += 1
        data = codec.pack(codec.Message(kind, payload, self._seq), self.image_format)
        try:
            with contextlib.suppress(OSError):
                self.websocket.socket.settimeout(max(deadline.remaining(), 1e-3))
            self.websocket.send(data)
        except TimeoutError:
            self.abort()
            raise ap.TransportTimeout(f"sending {kind} to {self.url} did not finish within {deadline.budget:g} s") \
                from None
        except ConnectionClosed as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise ap.TransportTimeout(f"sending {kind} to {self.url} timed out") from None
            raise ap.TransportError(f"{self.url}: the session was closed before {kind} was sent ({_close(exc)})",
                                    retryable=True) from None
        except OSError as exc:
            raise ap.TransportError(f"{self.url}: sending {kind} failed: {exc}") from None
        self._sent_any = True
        return self._seq

    def receive(self, deadline: ap.Deadline, what: str) -> codec.Message:
        """The next message, decoded within the limits, by ``deadline``."""
        try:
            data = self.websocket.recv(timeout=deadline.remaining())
        except TimeoutError:
            self.abort()
            raise ap.TransportTimeout(f"no {what} from {self.url} within {deadline.budget:g} s") from None
        except ConnectionClosed as exc:
            ours = exc.sent if exc.rcvd is None else None
            if ours is not None and ours.code == MESSAGE_TOO_BIG:
                raise ap.ProtocolError(f"{what} from {self.url} is larger than max_message_bytes="
                                       f"{self.limits.max_message_bytes:,}") from None
            raise ap.TransportError(f"{self.url} closed the session while we waited for the {what} ({_close(exc)})") \
                from None
        if isinstance(data, str):
            raise ap.ProtocolError(f"{what}: expected a binary msgpack frame, got text {data[:100]!r}")
        return codec.unpack(data, self.limits)

    def start_episode(self, task: dict[str, Any], deadline: ap.Deadline) -> None:
        """Send ``EPISODE_START`` with ``{"task": task}``."""
        self._start_seq = self.send(codec.EPISODE_START, {"task": task}, deadline)
        self.in_episode = True
        self.steps = 0
        self.episode_started = time.monotonic()

    def end_episode(self, deadline: ap.Deadline) -> None:
        """Send ``EPISODE_END`` with what the client knows of the episode (its steps and duration)."""
        if not self.in_episode:
            return
        self.in_episode = False
        elapsed = round(time.monotonic() - self.episode_started, 3)
        self.send(codec.EPISODE_END, {"metrics": {}, "steps": self.steps, "elapsed_sec": elapsed}, deadline)

    def act(self, observation: dict[str, Any], deadline: ap.Deadline) -> dict[str, Any]:
        """Send an ``OBSERVATION`` and return the ``ACTION`` payload answered to it.

        Raises:
            ServerError: the server answered ``ERROR`` (to this observation or to the episode's start).
            ProtocolError: another message, or a reply with another ``seq``.
            TransportTimeout, TransportError: see :meth:`send` and :meth:`receive`.
        """
        seq = self.send(codec.OBSERVATION, observation, deadline)
        self.steps += 1
        reply = self.receive(deadline, "ACTION reply")
        if reply.type == codec.ERROR and reply.seq in (seq, self._start_seq):
            stage = "the episode start" if reply.seq == self._start_seq and reply.seq != seq else "the observation"
            text = _error_text(reply)
            raise ap.ServerError(f"the vla-eval server failed on {stage}: {text}", text)
        if reply.type != codec.ACTION:
            raise ap.ProtocolError(f"expected an ACTION reply to observation {seq}, got {reply.type} (seq {reply.seq})")
        if reply.seq != seq:
            raise ap.ProtocolError(f"ACTION reply has seq {reply.seq}, the observation had {seq}")
        return reply.payload

    # ------------------------------------------------------------- ap.Connection protocol

    def exchange(self, payload: Any, deadline: ap.Deadline) -> bytes:
        """Send one observation and return the ACTION message's bytes (the kit's Connection protocol)."""
        action = self.act(payload, deadline)
        return codec.pack(codec.Message(codec.ACTION, action, self._seq))

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake. Idempotent, any thread."""
        with contextlib.suppress(OSError):
            self.websocket.socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.websocket.socket.close()
        with contextlib.suppress(Exception):
            self.websocket.close()


def _error_text(message: codec.Message) -> str:
    error = message.payload.get("error", message.payload)
    text = error if isinstance(error, str) else repr(error)
    return text if len(text) <= 500 else text[:497] + "..."


def _close(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame"
    side = "server" if exc.rcvd is not None else "client"
    return f"{side} sent code {frame.code}{' ' + repr(frame.reason) if frame.reason else ''}"
