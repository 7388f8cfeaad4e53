"""The vla-eval reference model server: a model behind the vla-eval protocol, on loopback.

It speaks what vla-eval's own model servers speak (``vla_eval.model_servers.serve``): one session per
WebSocket connection; ``HELLO`` answered with ``HELLO`` (``model_server``, ``capabilities``,
``action_spec``, ``observation_params``); ``EPISODE_START``/``EPISODE_END`` reset the session's
episode (no reply); each ``OBSERVATION`` answered by an ``ACTION`` echoing its ``seq``, or by an
``ERROR`` (``{"error": "observation_failed: ..."}``) that leaves the connection open; ``GET /health``
answers ``200 {"status": "ok"}``. Server-side chunking works as in vla-eval's ``PredictModelServer``:
with ``chunk_size`` set, a predicted chunk is buffered per session and one action per observation
is returned until the buffer is empty.

The protocol has no place for credentials (vla-eval servers take none), so this server has no auth
option. It decodes requests within its limits, raises :func:`~arena_adapters.plugin.start_failure`
when it cannot start, and obeys a ``fault_injector`` before each reply.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from arena_adapters import plugin as ap
from arena_adapters_vlaeval import __version__, codec
from arena_adapters_vlaeval.transport import DEFAULT_PORT

logger = logging.getLogger(__name__)
HORIZON = 16
ACTION_DIM = 8

Model = Callable[[dict[str, Any], dict[str, Any]], Any]
"""A model: ``(observation, context) -> actions`` ``(D,)`` or ``(H, D)``; the context holds
``session_id``, ``episode_id``, ``step`` and ``task``."""


class HoldStateModel:
    """The built-in dummy model: a chunk of :data:`HORIZON` actions holding the observed state
    (joints and gripper), so an env stays where it is."""

    def __call__(self, observation: dict[str, Any], context: dict[str, Any]) -> np.ndarray[Any, Any]:
        state = np.asarray(observation["state"], dtype=np.float32).reshape(-1)
        if state.shape[0] < ACTION_DIM:
            raise ValueError(f"'state' must hold {ACTION_DIM} values (7 joints, gripper), got {state.shape[0]}")
        return np.repeat(state[None, :ACTION_DIM], HORIZON, axis=0)


ACTION_SPEC = {
    "joints": {"name": "joints", "dims": 7, "format": "joint_position_rad"},
    "gripper": {"name": "gripper", "dims": 1, "format": "continuous_01", "range": [0, 1]},
}


class _Session:
    def __init__(self) -> None:
        self.session_id = str(uuid.uuid4())
        self.episode_id = ""
        self.task: dict[str, Any] = {}
        self.step = 0
        self.buffer: deque[np.ndarray[Any, Any]] = deque()


class ReferenceServer:
    """A running reference server (see the module docstring)."""

    def __init__(self, model: Model | None, host: str, port: int, *, chunk_size: int | None,
                 limits: ap.DecodeLimits, fault_injector: ap.FaultInjector | None) -> None:
        self.model: Model = model if model is not None else HoldStateModel()
        self.chunk_size = chunk_size
        self.limits = limits
        self.fault_injector = fault_injector
        self.events: deque[tuple[str, str, int]] = deque(maxlen=10_000)
        """The last messages received: ``(session_id, type, seq)`` (for tests and debugging)."""
        self._stopped = threading.Event()
        self._connections: set[ServerConnection] = set()
        self._lock = threading.Lock()
        address = f"{host}:{port}"
        try:
            self._server: Server = serve(self._handle, host, port, compression=None,
                                         max_size=limits.max_message_bytes, ping_interval=None, close_timeout=0.2,
                                         process_request=self._process_request)
        except OSError as exc:
            raise ap.start_failure("the vla-eval reference server", address, exc) from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="vlaeval-server", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    # --------------------------------------------------------------------------- protocol

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if request.path.split("?", 1)[0] == "/health":
            response = connection.respond(HTTPStatus.OK, '{"status": "ok"}\n')
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections.add(connection)
        session = _Session()
        try:
            while not self._stopped.is_set():
                try:
                    data = connection.recv(timeout=0.2)
                except TimeoutError:
                    continue
                if isinstance(data, str):
                    self._reply(connection, codec.Message(codec.ERROR, {"error": "expected binary msgpack frames"}))
                    continue
                if not self._answer(connection, session, data):
                    return
        except ConnectionClosed:
            return
        finally:
            with self._lock:
                self._connections.discard(connection)

    def _answer(self, connection: ServerConnection, session: _Session, data: bytes) -> bool:
        try:
            message = codec.unpack(data, self.limits)
        except ap.ProtocolError as error:
            return self._reply(connection, codec.Message(codec.ERROR, {"error": f"bad_message: {error}"}))
        self.events.append((session.session_id, message.type, message.seq))
        if message.type == codec.HELLO:
            payload = {"harness_version": f"arena-adapters-vlaeval {__version__}",
                       "protocol_version": codec.PROTOCOL_VERSION, "model_server": type(self.model).__name__,
                       "capabilities": {}, "action_spec": ACTION_SPEC}
            return self._reply(connection, codec.Message(codec.HELLO, payload, message.seq))
        if message.type == codec.EPISODE_START:
            task = message.payload.get("task")
            session.task = task if isinstance(task, dict) else {}
            session.episode_id, session.step = str(uuid.uuid4()), 0
            session.buffer.clear()
            return True
        if message.type == codec.EPISODE_END:
            session.buffer.clear()
            return True
        if message.type == codec.OBSERVATION:
            try:
                actions = self._act(message.payload, session)
                reply = codec.Message(codec.ACTION, {"actions": actions}, message.seq)
            except Exception as exc:  # the protocol's way: ERROR, and the session goes on
                reply = codec.Message(codec.ERROR, {"error": f"observation_failed: {type(exc).__name__}: {exc}"},
                                      message.seq)
            session.step += 1
            return self._reply(connection, reply)
        return True  # a client's ERROR or ACTION: nothing to answer

    def _act(self, observation: dict[str, Any], session: _Session) -> np.ndarray[Any, Any]:
        if session.buffer:
            return session.buffer.popleft()
        context = {"session_id": session.session_id, "episode_id": session.episode_id, "step": session.step,
                   "task": session.task}
        actions = np.asarray(self.model(observation, context), dtype=np.float32)
        if self.chunk_size is None or actions.ndim == 1:
            return actions
        session.buffer.extend(actions[: self.chunk_size])
        return session.buffer.popleft()

    def _reply(self, connection: ServerConnection, message: codec.Message) -> bool:
        data = codec.pack(message)
        fault = self.fault_injector(data) if self.fault_injector is not None else None
        if fault is None:
            connection.send(data)
        elif fault.kind == "replace":
            connection.send(fault.data)
        elif fault.kind == "silence":
            self._wait_until_closed(connection)
            return False
        elif fault.kind == "close":
            _abort(connection)
            return False
        elif fault.kind == "trickle":
            frame = _binary_frame(fault.data)
            for byte in frame:
                if self._stopped.wait(fault.interval_s):
                    return False
                try:
                    connection.socket.sendall(bytes([byte]))
                except OSError:
                    return False
            self._wait_until_closed(connection)
            return False
        return True

    def _wait_until_closed(self, connection: ServerConnection) -> None:
        while not self._stopped.is_set():
            try:
                connection.recv(timeout=0.2)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return

    # ---------------------------------------------------------------------------- control

    def stop(self) -> None:
        """Stop serving, drop every connection and release the port. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _abort(connection)
        self._thread.join(2.0)

    def wait(self) -> None:
        """Block until :meth:`stop`."""
        while not self._stopped.wait(0.5):
            pass


def _abort(connection: ServerConnection) -> None:
    with contextlib.suppress(OSError):
        connection.socket.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        connection.socket.close()


def _binary_frame(data: bytes) -> bytes:
    """An unmasked server-to-client binary WebSocket frame (for the trickle fault)."""
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x82, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x82, 126, size)
    else:
        header = struct.pack("!BBQ", 0x82, 127, size)
    return header + data


def start_server(policy: Model | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 chunk_size: int | None = None, fault_injector: ap.FaultInjector | None = None,
                 max_message_bytes: int = 256 * 2**20, max_array_bytes: int = ap.DecodeLimits.max_array_bytes,
                 max_depth: int = ap.DecodeLimits.max_depth) -> ReferenceServer:
    """Start the reference server in background threads; returns once it listens.

    Args:
        policy: the model (``(observation, context) -> actions``); ``None``: :class:`HoldStateModel`.
        chunk_size: serve chunks one action per observation, as vla-eval's ``chunk_size`` does
            (``None``: return the model's whole output).
        fault_injector: called with each reply's bytes; its :class:`~arena_adapters.plugin.ReplyFault`
            is obeyed instead (tests).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ap.ConfigError(f"option 'chunk_size': expected an int >= 1 or none, got {chunk_size!r}")
    limits = ap.DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                             max_depth=max_depth)
    return ReferenceServer(policy, host, port, chunk_size=chunk_size, limits=limits, fault_injector=fault_injector)
