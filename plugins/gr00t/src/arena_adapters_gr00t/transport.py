"""The client side of a GR00T policy server, on the transport kit: ZeroMQ REQ + msgpack.

The kit (:class:`~arena_adapters.transport.ClientTransport`) keeps the promises: every call has a
deadline, replies are decoded within :class:`~arena_adapters.transport.DecodeLimits`, failures are
typed errors naming the endpoint and the request, and :meth:`~Gr00tTransport.close` is final and
ends a request in flight at once. This module supplies only the protocol:

- :class:`ZmqConnection`: one REQ socket (``LINGER=0``, ``MAXMSGSIZE`` = ``max_message_bytes``)
  that waits for the reply until the call's deadline (a total bound) and wakes at once when
  aborted from another thread. A connection that timed out is thrown away (a REQ socket that timed
  out refuses the next send); ZeroMQ itself reconnects when a server restarts between requests.
  ZeroMQ cannot tell whether a server received a request, so nothing is ever resent.
- the envelope: ``{"endpoint", "data", "api_token"}`` requests; ``{"error": ...}`` and legacy
  ``b"ERROR"`` replies are :class:`~arena_adapters.errors.ServerError`.
- the array encoding, per server: ``npy`` (``__ndarray_class__`` maps, N1.6 and older) or ``nd``
  (msgpack-numpy maps, N1.7-era servers). ``auto`` picks from what the server shows and remembers
  it: the ``__ModalityConfig__`` marker or ``nd`` arrays in a reply mean ``nd``; the N1.6 marker or
  ``npy`` arrays mean ``npy``; until then ``get_action`` is sent as ``npy`` and, if the server
  refuses it because an array is not a numpy array (what an N1.7-era server says), once more as
  ``nd`` (the refused request never reached the policy).

``reset``: the GR00T ``reset`` endpoint has no env ids and resets the *whole* server-side policy.
:meth:`Gr00tTransport.reset` therefore calls it only when all envs reset (``env_ids is None``);
resets of some envs only drop their chunks in the scheduler (the stock ``Gr00tPolicy.reset`` is
stateless anyway). N1.5 servers have no ``reset`` endpoint: nothing is sent.

ZeroMQ drops a reply over ``MAXMSGSIZE`` before it is read (so it never costs memory), and gives
no sign of it: such a reply shows as a :class:`~arena_adapters.errors.TransportTimeout`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import zmq
from numpy.typing import NDArray

from arena_adapters.errors import ConfigError, ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters.parts import Health
from arena_adapters.transport import ClientTransport, Deadline, DecodeLimits, RetryPolicy
from arena_adapters.transport.limits import MiB
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.codec import ARRAY_ENCODINGS, ND, NPY, CodecError, decode, encode_frame
from arena_adapters_gr00t.modality import MARKER_N16, MARKER_N17, ModalityConfig, as_modality_configs

logger = logging.getLogger(__name__)

AUTO = "auto"
ARRAY_ENCODING_CHOICES = (AUTO, *ARRAY_ENCODINGS)

_ARRAY_REFUSED = re.compile(r"must be a numpy array(?! of)|not a numpy array|Got <class 'dict'>", re.IGNORECASE)


class ZmqConnection:
    """One REQ socket with its own ZeroMQ context (see the module docstring).

    :meth:`abort` may be called from any thread: a blocked :meth:`exchange` wakes at once (through
    a pipe it polls with the socket) and ends with a :class:`TransportError`; the socket is always
    closed by the thread that last used it.
    """

    def __init__(self, address: str, max_message_bytes: int) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._busy = False
        self._aborted = False
        self._released = False
        self._context: zmq.Context[Any] = zmq.Context(io_threads=1)
        self._wake_read, self._wake_write = os.pipe()
        try:
            self._socket: zmq.Socket[Any] = self._context.socket(zmq.REQ)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            if address.startswith("tcp://["):
                self._socket.setsockopt(zmq.IPV6, 1)
            self._socket.connect(address)
        except zmq.ZMQError as exc:
            self._release()
            raise TransportError(f"cannot open a ZeroMQ socket to {address}: {exc}") from None
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._wake_read, zmq.POLLIN)

    def exchange(self, payload: Any, deadline: Deadline) -> bytes:
        """Send one frame and return the reply frame, waiting no later than ``deadline``."""
        with self._lock:
            if self._aborted:
                raise TransportError("the connection was closed")
            self._busy = True
        try:
            return self._exchange(payload, deadline)
        finally:
            with self._lock:
                self._busy = False
                aborted = self._aborted
            if aborted:
                self._release()

    def _exchange(self, payload: Any, deadline: Deadline) -> bytes:
        try:
            # zero-copy for large frames (pyzmq copies those under its copy_threshold): the payload is
            # never written to again, and ZeroMQ keeps a reference until it has sent it
            self._socket.send(payload, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise TransportTimeout("the GR00T server did not take the request (send queue full)") from None
        except zmq.ZMQError as exc:
            raise TransportError(f"ZeroMQ error sending to the GR00T server: {exc}") from None
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise TransportTimeout(
                    f"the GR00T server did not answer within {deadline.budget:g} s (is it running, on this port, "
                    "and reachable? a reply over max_message_bytes is dropped by ZeroMQ and looks the same)"
                )
            events = dict(self._poller.poll(max(1, math.ceil(remaining * 1000))))
            if self._aborted or self._wake_read in events:
                raise TransportError("the request was cancelled: the transport was closed")
            if events.get(self._socket):
                try:
                    reply: bytes = self._socket.recv(zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    raise TransportError(f"ZeroMQ error receiving from the GR00T server: {exc}") from None
                return reply

    def abort(self) -> None:
        """Drop the connection; an exchange in flight ends at once with a TransportError. Idempotent."""
        with self._lock:
            self._aborted = True
            if self._busy:  # the exchanging thread closes the socket; the pipe is open until it does
                with contextlib.suppress(OSError):
                    os.write(self._wake_write, b"\0")
                return
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        socket = getattr(self, "_socket", None)
        if socket is not None:
            socket.close(linger=0)
        self._context.term()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)


class Gr00tTransport(ClientTransport):
    """An :class:`~arena_adapters.parts.InferenceTransport` for Isaac-GR00T policy servers.

    Args:
        endpoint: ``tcp://HOST:PORT`` of the server (``HOST:PORT`` also accepted; the port is required).
        timeout: the default budget of one call, in seconds.
        api_token: sent with every request when set (servers started with a token require it).
        protocol_version: ``"n1.6"`` (N1.6 and later servers) or ``"n1.5"`` (``gr00t/eval/service.py``:
            the observation is the request data, the reply is the action map, no reset).
        options: the ``options`` map sent with every N1.6 ``get_action`` (upstream sends ``None``).
        array_encoding: ``"auto"`` (from what the server shows), ``"npy"`` or ``"nd"`` (see module doc).
        max_message_bytes, max_array_bytes, max_depth: the reply :class:`DecodeLimits`.
        retry_attempts, retry_backoff: the :class:`RetryPolicy` (ZeroMQ failures are never resent).

    The factory does no I/O; :meth:`connect` opens the socket (ZeroMQ connects in the background).
    """

    protocol_title = "GR00T"
    schemes = ("tcp",)
    default_port = None

    def __init__(
        self,
        endpoint: str = protocol.DEFAULT_ENDPOINT,
        timeout: float = 30.0,
        api_token: str | None = None,
        protocol_version: str = protocol.N16,
        options: Mapping[str, Any] | None = None,
        array_encoding: str = AUTO,
        *,
        max_message_bytes: int = 64 * MiB,
        max_array_bytes: int = DecodeLimits.max_array_bytes,
        max_depth: int = DecodeLimits.max_depth,
        retry_attempts: int = 2,
        retry_backoff: float = 0.05,
    ) -> None:
        if not isinstance(timeout, (int, float)) or not timeout > 0 or not math.isfinite(timeout):
            raise ConfigError(f"option 'timeout': expected seconds > 0, got {timeout!r}")
        if array_encoding not in ARRAY_ENCODING_CHOICES:
            raise ConfigError(f"option 'array_encoding': expected one of {list(ARRAY_ENCODING_CHOICES)}, "
                              f"got {array_encoding!r}")
        self.api_token = api_token or None
        self.protocol_version = protocol.check_protocol_version(protocol_version)
        limits = DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                              max_depth=max_depth)
        super().__init__(endpoint, timeout=timeout, limits=limits,
                         retry=RetryPolicy(attempts=retry_attempts, backoff=retry_backoff),
                         credentials=self.api_token is not None)
        self.options = dict(options) if options is not None else None
        self.array_encoding = array_encoding
        self.chosen_encoding: str | None = None if array_encoding == AUTO else array_encoding
        """The array encoding requests use; ``None`` while ``auto`` has not seen the server yet."""
        self.last_info: Any = None
        self._modality_config: dict[str, ModalityConfig] | None = None

    # ------------------------------------------------------------------------- the protocol

    def open_connection(self, deadline: Deadline) -> ZmqConnection:
        """A REQ socket connected (in the background) to the endpoint."""
        return ZmqConnection(self.endpoint.url, self.limits.max_message_bytes)

    def encode(self, message: Any) -> bytes | memoryview:
        """``(request_map, array_encoding)`` -> one frame (see :func:`~arena_adapters_gr00t.codec.encode_frame`)."""
        body, arrays = message
        return encode_frame(body, arrays=arrays)

    def decode(self, data: bytes) -> Any:
        """One reply frame -> the message; ``{"error": ...}`` and ``b"ERROR"`` raise ServerError."""
        if data == protocol.LEGACY_ERROR_REPLY:
            raise ServerError("the GR00T server replied ERROR (an old server; check that it runs the policy you "
                              "expect)", "ERROR")
        seen: set[str] = set()
        try:
            value = decode(data, limits=self.limits, seen=seen)
        except CodecError as error:
            raise ProtocolError(error.message) from None
        if seen and self.chosen_encoding is None:
            self._learn_from_reply(seen)
        if isinstance(value, dict) and "error" in value:
            text = str(value["error"])
            if text.startswith("Unauthorized"):
                hint = "set api_token to the server's token" if self.api_token is None else "api_token is not the " \
                       "server's token"
                raise ServerError(f"the GR00T server refused the request: {text} ({hint})", text)
            raise ServerError(f"the GR00T server failed: {text}", text)
        return value

    # ------------------------------------------------------------------------------ endpoints

    def call_endpoint(self, endpoint: str, data: Any = None, *, with_data: bool | None = None,
                      deadline: Deadline | None = None, arrays: str | None = None) -> Any:
        """Call any server endpoint and return its decoded reply.

        Args:
            endpoint: the endpoint name.
            data: the request ``data`` (keyword arguments of the server's handler).
            with_data: send a ``data`` field; by default for every endpoint but ping, kill and
                get_modality_config (as upstream's client does).
            deadline: the call's deadline (default: :attr:`timeout` from now).
            arrays: the array encoding (default: the chosen one, ``npy`` until known).

        Raises:
            TransportTimeout, TransportError, ServerError, ProtocolError.
        """
        if with_data is None:
            with_data = endpoint not in protocol.ENDPOINTS_WITHOUT_INPUT
        body = protocol.request(endpoint, data, with_data=with_data, api_token=self.api_token)
        return self.call((body, arrays or self.chosen_encoding or NPY), deadline, endpoint)

    def ping(self, deadline: Deadline | None = None) -> Any:
        """Call ``ping``; returns the server's reply (``{"status": "ok", ...}``)."""
        return self.call_endpoint(protocol.PING, deadline=deadline)

    def get_modality_config(self, *, refresh: bool = False, deadline: Deadline | None = None) -> dict[
        str, ModalityConfig
    ]:
        """The server's ``{modality: ModalityConfig}`` (cached after the first call)."""
        if self._modality_config is None or refresh:
            self._modality_config = as_modality_configs(
                self.call_endpoint(protocol.GET_MODALITY_CONFIG, deadline=deadline))
        return dict(self._modality_config)

    def get_action(self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None,
                   deadline: Deadline | None = None) -> tuple[Any, Any]:
        """Call ``get_action`` with a wire observation; returns ``(action, info)`` (``info`` is
        ``None`` for N1.5 servers).

        Raises:
            ProtocolError: the reply is not ``[action_map, info]`` (N1.6) or an action map (N1.5).
        """
        deadline = self.deadline(deadline)
        data = protocol.get_action_data(observation, options, self.protocol_version)
        if self.chosen_encoding is not None:
            reply = self.call_endpoint(protocol.GET_ACTION, data, deadline=deadline)
        else:
            reply = self._first_get_action(data, deadline)
        return self._action_reply(reply)

    def _first_get_action(self, data: Any, deadline: Deadline) -> Any:
        try:
            reply = self.call_endpoint(protocol.GET_ACTION, data, deadline=deadline, arrays=NPY)
        except ServerError as refused:
            if self.chosen_encoding is not None or not _ARRAY_REFUSED.search(refused.server_message):
                raise
            try:
                reply = self.call_endpoint(protocol.GET_ACTION, data, deadline=deadline, arrays=ND)
            except ServerError:
                raise refused from None
            self._choose(ND, f"it refused npy arrays ({refused.server_message!r}) and took nd ones")
            return reply
        if self.chosen_encoding is None:
            self._choose(NPY, "it took npy arrays")
        return reply

    def _action_reply(self, reply: Any) -> tuple[Any, Any]:
        if self.protocol_version == protocol.N15:
            if not isinstance(reply, dict):
                raise ProtocolError(f"N1.5 get_action reply must be an action map, got {type(reply).__name__}",
                                    endpoint=str(self.endpoint), request=protocol.GET_ACTION)
            return reply, None
        if not isinstance(reply, (list, tuple)) or len(reply) != 2 or not isinstance(reply[0], dict):
            raise ProtocolError(
                f"get_action reply must be [action_map, info], got {_summary(reply)}; is the server an "
                f"N1.5 one (use protocol_version='n1.5')?", endpoint=str(self.endpoint), request=protocol.GET_ACTION,
            )
        return reply[0], reply[1]

    def reset_policy(self, options: Mapping[str, Any] | None = None, deadline: Deadline | None = None) -> Any:
        """Call ``reset`` (the whole server-side policy). Returns the server's reply."""
        return self.call_endpoint(protocol.RESET, {"options": options}, deadline=deadline)

    def kill_server(self, deadline: Deadline | None = None) -> Any:
        """Call ``kill``: the server leaves its loop after replying."""
        return self.call_endpoint(protocol.KILL, deadline=deadline)

    # ------------------------------------------------------------------ the array encoding

    def _learn_from_reply(self, seen: set[str]) -> None:
        if ND in seen or MARKER_N17 in seen:
            self._choose(ND, "its reply has N1.7-era forms (nd arrays or the __ModalityConfig__ marker)")
        elif NPY in seen or MARKER_N16 in seen:
            self._choose(NPY, "its reply has N1.6 forms (npy arrays or the __ModalityConfig_class__ marker)")

    def _choose(self, arrays: str, reason: str) -> None:
        if self.chosen_encoding is None:
            self.chosen_encoding = arrays
            logger.info("GR00T server at %s: sending %s arrays, as %s", self.endpoint, arrays, reason)

    # ----------------------------------------------------------------- InferenceTransport API

    def health(self, deadline: Deadline | None = None) -> Health:
        """Ping the server; never raises."""
        deadline = self.deadline(deadline)
        started = deadline.remaining()
        try:
            reply = self.ping(deadline)
        except Exception as exc:
            return Health(ok=False, detail=str(exc), latency_s=started - deadline.remaining())
        ok = isinstance(reply, dict) and reply.get("status") == "ok"
        return Health(ok=ok, detail=f"{self.endpoint}: {reply!r}", latency_s=started - deadline.remaining())

    def metadata(self, deadline: Deadline | None = None) -> Mapping[str, Any]:
        """The server's modality configs (``{}``, with a warning, when the server's
        ``get_modality_config`` fails: it may have none).

        Raises:
            ServerError: the server refused the API token (missing or wrong ``api_token``).
            TransportTimeout, TransportError, ProtocolError: as any call.
        """
        try:
            return self.get_modality_config(deadline=deadline)
        except ServerError as error:
            if error.server_message.startswith("Unauthorized"):
                raise
            logger.warning("GR00T server at %s has no usable get_modality_config: %s", self.endpoint,
                           error.server_message)
            self._modality_config = {}
            return {}

    def infer(self, request: Any, deadline: Deadline | None = None) -> dict[str, Any]:
        """Send one batched wire observation to ``get_action`` and return the action map
        (the ``info`` part is kept in :attr:`last_info`)."""
        action, info = self.get_action(request, self.options, deadline)
        self.last_info = info
        return dict(action)

    def reset(self, env_ids: NDArray[Any] | None, deadline: Deadline | None = None) -> None:
        """Reset the server-side policy when ALL envs reset (``env_ids is None``); see module doc."""
        if env_ids is None and self.protocol_version == protocol.N16:
            self.reset_policy(None, deadline)


def _summary(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value[:4])})"
    return type(value).__name__
