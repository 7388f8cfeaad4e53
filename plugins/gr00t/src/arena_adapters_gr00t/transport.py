"""The client side of a GR00T policy server: a ZeroMQ REQ socket that never hangs.

Upstream's ``PolicyClient`` stores a timeout but never applies it, and leaves ``LINGER`` infinite,
so a dead server blocks it forever and a queued request blocks process exit. This transport:

- sends each request on a REQ socket and waits for the reply at most ``timeout`` seconds
  (:class:`~arena_adapters.errors.TransportTimeout` after that);
- sets ``LINGER=0`` and re-creates the socket after a timeout or any socket error (a REQ socket
  that timed out refuses the next send); ZeroMQ itself reconnects when a server restarts between
  requests, so a restarted server is picked up by the next request;
- waits in short slices, so :meth:`Gr00tTransport.close` from another thread (or at interpreter
  exit) ends a request in flight within a fraction of a second;
- maps ``{"error": ...}`` and legacy ``b"ERROR"`` replies to :class:`~arena_adapters.errors.ServerError`.

``reset``: the GR00T ``reset`` endpoint has no env ids and resets the *whole* server-side policy.
:meth:`Gr00tTransport.reset` therefore calls it only when all envs reset (``env_ids is None``);
resets of some envs only drop their chunks in the scheduler (the stock ``Gr00tPolicy.reset`` is
stateless anyway). N1.5 servers have no ``reset`` endpoint: nothing is sent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import zmq
from numpy.typing import NDArray

from arena_adapters.errors import (
    AdapterError,
    ConfigError,
    ProtocolError,
    ServerError,
    TransportError,
    TransportTimeout,
)
from arena_adapters.parts import Health
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.codec import CodecError, decode, encode
from arena_adapters_gr00t.modality import ModalityConfig, as_modality_configs

logger = logging.getLogger(__name__)

_WAIT_SLICE_S = 0.1
_CLOSE_WAIT_S = 2.0


class _Connection:
    """The socket state, kept apart from the transport so that a finalizer can close it at exit."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.lock = threading.Lock()
        self.context: zmq.Context[Any] | None = None
        self.socket: zmq.Socket[Any] | None = None
        self.closing = False

    def open(self, timeout_ms: int) -> zmq.Socket[Any]:
        if self.context is None:
            self.context = zmq.Context()
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        sock.connect(self.endpoint)
        self.socket = sock
        return sock

    def discard_socket(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def close(self) -> None:
        self.closing = True
        acquired = self.lock.acquire(timeout=_CLOSE_WAIT_S)
        try:
            if not acquired:
                return  # a request is stuck outside our wait loop; LINGER=0 still lets the process exit
            self.discard_socket()
            if self.context is not None:
                self.context.term()
                self.context = None
        finally:
            if acquired:
                self.lock.release()


class Gr00tTransport:
    """An :class:`~arena_adapters.parts.InferenceTransport` for Isaac-GR00T policy servers.

    Args:
        endpoint: ``tcp://HOST:PORT`` of the server (``host:port`` also accepted).
        timeout: seconds to wait for each reply; a :class:`TransportTimeout` is raised after that.
        api_token: sent with every request when set (servers started with a token require it).
        protocol_version: ``"n1.6"`` (N1.6 and later servers) or ``"n1.5"`` (``gr00t/eval/service.py``:
            the observation is the request data, the reply is the action map, no reset).
        options: the ``options`` map sent with every N1.6 ``get_action`` (upstream sends ``None``).

    The factory does no I/O; :meth:`connect` opens the socket (ZeroMQ connects in the background).
    """

    def __init__(
        self,
        endpoint: str = protocol.DEFAULT_ENDPOINT,
        timeout: float = 30.0,
        api_token: str | None = None,
        protocol_version: str = protocol.N16,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not timeout or timeout <= 0 or not math.isfinite(timeout):
            raise ConfigError(f"option 'timeout': expected seconds > 0, got {timeout!r}")
        self.endpoint = protocol.normalize_endpoint(endpoint)
        self.timeout = float(timeout)
        self.api_token = api_token or None
        self.protocol_version = protocol.check_protocol_version(protocol_version)
        self.options = dict(options) if options is not None else None
        self.last_info: Any = None
        self._modality_config: dict[str, ModalityConfig] | None = None
        self._connection = _Connection(self.endpoint)
        self._finalizer = weakref.finalize(self, self._connection.close)
        self._closed = False

    # ------------------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        """Open the REQ socket (idempotent). ZeroMQ connects, and reconnects, in the background."""
        self._check_open()
        with self._connection.lock:
            if self._connection.socket is None:
                self._connection.open(self._timeout_ms(self.timeout))

    def close(self) -> None:
        """Close the socket and the ZeroMQ context (idempotent); ends a request in flight quickly."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Gr00tTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"the GR00T transport to {self.endpoint} is closed")

    # ------------------------------------------------------------------------------ endpoints

    def call(self, endpoint: str, data: Any = None, *, with_data: bool | None = None,
             timeout: float | None = None) -> Any:
        """Call any server endpoint and return its decoded reply.

        Args:
            endpoint: the endpoint name.
            data: the request ``data`` (keyword arguments of the server's handler).
            with_data: send a ``data`` field; by default for every endpoint but ping, kill and
                get_modality_config (as upstream's client does).
            timeout: seconds for this call (default: the transport's).

        Raises:
            TransportTimeout, TransportError, ServerError, ProtocolError.
        """
        if with_data is None:
            with_data = endpoint not in protocol.ENDPOINTS_WITHOUT_INPUT
        message = protocol.request(endpoint, data, with_data=with_data, api_token=self.api_token)
        try:
            frame = encode(message)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode the {endpoint!r} request for GR00T: {exc}") from exc
        reply = self._exchange(frame, endpoint, self.timeout if timeout is None else timeout)
        if reply == protocol.LEGACY_ERROR_REPLY:
            raise ServerError(f"GR00T server at {self.endpoint} replied ERROR to {endpoint!r} "
                              "(an old server; check that it runs the policy you expect)", "ERROR")
        try:
            decoded = decode(reply)
        except CodecError as exc:
            raise ProtocolError(
                f"undecodable reply from GR00T server at {self.endpoint} to {endpoint!r}: {exc}"
            ) from exc
        if isinstance(decoded, dict) and "error" in decoded:
            message_text = str(decoded["error"])
            raise ServerError(f"GR00T server at {self.endpoint} failed {endpoint!r}: {message_text}", message_text)
        return decoded

    def ping(self) -> Any:
        """Call ``ping``; returns the server's reply (``{"status": "ok", ...}``)."""
        return self.call(protocol.PING)

    def get_modality_config(self, *, refresh: bool = False) -> dict[str, ModalityConfig]:
        """The server's ``{modality: ModalityConfig}`` (cached after the first call)."""
        if self._modality_config is None or refresh:
            self._modality_config = as_modality_configs(self.call(protocol.GET_MODALITY_CONFIG))
        return dict(self._modality_config)

    def get_action(self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """Call ``get_action`` with a wire observation; returns ``(action, info)`` (``info`` is
        ``None`` for N1.5 servers).

        Raises:
            ProtocolError: the reply is not ``[action_map, info]`` (N1.6) or an action map (N1.5).
        """
        data = protocol.get_action_data(observation, options, self.protocol_version)
        reply = self.call(protocol.GET_ACTION, data)
        if self.protocol_version == protocol.N15:
            if not isinstance(reply, dict):
                raise ProtocolError(f"N1.5 get_action reply must be an action map, got {type(reply).__name__}")
            return reply, None
        if not isinstance(reply, (list, tuple)) or len(reply) != 2 or not isinstance(reply[0], dict):
            raise ProtocolError(
                f"get_action reply must be [action_map, info], got {_summary(reply)}; is the server an "
                f"N1.5 one (use protocol_version='n1.5')?"
            )
        return reply[0], reply[1]

    def reset_policy(self, options: Mapping[str, Any] | None = None) -> Any:
        """Call ``reset`` (the whole server-side policy). Returns the server's reply."""
        return self.call(protocol.RESET, {"options": options})

    def kill_server(self) -> Any:
        """Call ``kill``: the server leaves its loop after replying."""
        return self.call(protocol.KILL)

    # ----------------------------------------------------------------- InferenceTransport API

    def health(self) -> Health:
        """Ping the server; never raises."""
        started = time.perf_counter()
        try:
            reply = self.ping()
        except AdapterError as exc:
            return Health(ok=False, detail=str(exc), latency_s=time.perf_counter() - started)
        latency = time.perf_counter() - started
        ok = isinstance(reply, dict) and reply.get("status") == "ok"
        return Health(ok=ok, detail=f"{self.endpoint}: {reply!r}", latency_s=latency)

    def metadata(self) -> Mapping[str, Any]:
        """The server's modality configs (``{}`` when the server describes nothing)."""
        try:
            return self.get_modality_config()
        except ServerError as exc:
            logger.warning("GR00T server at %s has no usable get_modality_config: %s", self.endpoint, exc)
            self._modality_config = {}
            return {}

    def infer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one batched wire observation to ``get_action`` and return the action map
        (the ``info`` part is kept in :attr:`last_info`)."""
        action, info = self.get_action(request, self.options)
        self.last_info = info
        return dict(action)

    def reset(self, env_ids: NDArray[Any] | None) -> None:
        """Reset the server-side policy when ALL envs reset (``env_ids is None``); see module doc."""
        if env_ids is None and self.protocol_version == protocol.N16:
            self.reset_policy(None)

    # ------------------------------------------------------------------------------- the wire

    @staticmethod
    def _timeout_ms(timeout: float) -> int:
        return max(1, math.ceil(timeout * 1000))

    def _exchange(self, frame: bytes, endpoint: str, timeout: float) -> bytes:
        self._check_open()
        connection = self._connection
        with connection.lock:
            if connection.closing:
                raise TransportError(f"the GR00T transport to {self.endpoint} is closed")
            sock = connection.socket or connection.open(self._timeout_ms(self.timeout))
            deadline = time.monotonic() + timeout
            try:
                if timeout != self.timeout:
                    sock.setsockopt(zmq.SNDTIMEO, self._timeout_ms(timeout))
                sock.send(frame)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TransportTimeout(
                            f"GR00T server at {self.endpoint} did not answer {endpoint!r} within {timeout:g} s "
                            "(is it running, on this port, and reachable?)"
                        )
                    if sock.poll(self._timeout_ms(min(remaining, _WAIT_SLICE_S)), zmq.POLLIN):
                        reply: bytes = sock.recv()
                        if timeout != self.timeout:
                            sock.setsockopt(zmq.SNDTIMEO, self._timeout_ms(self.timeout))
                        return reply
                    if connection.closing:
                        raise TransportError(f"the GR00T transport to {self.endpoint} was closed during {endpoint!r}")
            except zmq.Again:
                connection.discard_socket()
                raise TransportTimeout(
                    f"GR00T server at {self.endpoint} did not accept {endpoint!r} within {timeout:g} s"
                ) from None
            except zmq.ZMQError as exc:
                connection.discard_socket()
                raise TransportError(f"ZeroMQ error talking to GR00T server at {self.endpoint}: {exc}") from exc
            except BaseException:
                connection.discard_socket()  # the REQ socket waits for a reply that will never be read
                raise


def _summary(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value[:4])})"
    return type(value).__name__
