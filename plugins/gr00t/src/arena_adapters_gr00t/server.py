"""A reference GR00T policy server: the wire behaviour of upstream's ``PolicyServer``.

It binds a ZeroMQ REP socket (``127.0.0.1:5555`` unless told otherwise) and answers one request at a
time, in a background thread of the current process:

- endpoints ``ping``, ``kill``, ``get_action``, ``reset``, ``get_modality_config`` (plus any added
  with :meth:`ReferenceServer.register_endpoint`); a missing endpoint means ``get_action``;
- when started with an ``api_token``, every request (even ``ping``) must carry it, or the reply is
  ``{"error": "Unauthorized: Invalid API token"}``;
- any exception (undecodable request, unknown endpoint, strict validation, the policy itself)
  replies ``{"error": str(exception)}``;
- ``protocol_version="n1.5"`` serves like ``gr00t/eval/service.py``: the request data is the
  observation, the reply is the action map, no ``reset``, ModalityConfig ``as_json`` as a JSON string
  with prefixed keys;
- ``array_encoding`` picks the server's era: ``"npy"`` (N1.6: arrays read and written as
  ``__ndarray_class__`` maps) or ``"nd"`` (N1.7-era: msgpack-numpy maps both ways and the
  ``__ModalityConfig__`` marker). Like upstream, an array in the other form reaches the policy as a
  plain map, which strict validation refuses ("... must be a numpy array");
- requests are decoded within :class:`~arena_adapters.transport.DecodeLimits` (``max_message_bytes``
  is also the socket's ``MAXMSGSIZE``: ZeroMQ drops a larger request unread);
- ``fault_injector``: called with each reply's bytes before it is sent; the
  :class:`~arena_adapters.transport.ReplyFault` it returns is done instead (``replace``; ``silence``
  and ``close`` drop the request and re-bind, since a REP socket must answer before it reads again;
  ``trickle`` sends the whole message when its last byte would have arrived, ``interval_s`` per byte,
  as ZeroMQ delivers messages whole). For the conformance kit and fault tests.

The policy: see :func:`~arena_adapters_gr00t.reference_policy.as_served_policy` (``None`` serves the
deterministic DROID test policy). Start it with :func:`start_reference_server` or
``arena-adapters serve gr00t [--policy module:attr] [--port 5555] [--api-token T] [--format nested]``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq

from arena_adapters.errors import ConfigError
from arena_adapters.importing import import_object
from arena_adapters.records import NULL_POLICY
from arena_adapters.transport import (
    SERVER_MAX_REQUEST_BYTES,
    Deadline,
    DecodeLimits,
    FaultInjector,
    start_failure,
    wait_ready,
)
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.codec import ARRAY_ENCODINGS, ND, NPY, decode, encode
from arena_adapters_gr00t.modality import MARKER_N17, N15_FORM, ModalityConfig, WireForm, as_modality_configs
from arena_adapters_gr00t.reference_policy import as_served_policy

logger = logging.getLogger(__name__)

_POLL_MS = 100
_READY_TIMEOUT_S = 10.0


@dataclass
class _Endpoint:
    handler: Callable[..., Any]
    requires_input: bool = True


class ReferenceServer:
    """A GR00T policy server on a REP socket (see the module docstring).

    Args:
        policy: the policy object or callable (``None``: the built-in test policy; ``"null"``: a
            constant chunk at no cost; a ``"module:attr"`` string is imported).
        host, port: where to bind (``port=0`` picks a free port).
        api_token: require this token on every request.
        format: ``"flat"`` wraps the policy like ``--use-sim-policy-wrapper``, ``"nested"`` serves it
            as is; default: flat for the built-in policy, policy objects as given.
        protocol_version: ``"n1.6"`` or ``"n1.5"``.
        strict: validate observations of the built-in policy and flat wrapper like upstream.
        array_encoding: the era of arrays it reads and writes: ``"npy"`` (N1.6) or ``"nd"`` (N1.7-era).
        max_message_bytes, max_array_bytes, max_depth: the limits on requests.
        writable_arrays: give the policy arrays with their own writable memory, as upstream's
            ``np.load`` does (default); ``False``: read-only views of the request frame, without
            copying it (for policies that never write into their observation).
        fault_injector: ``f(reply_bytes) -> ReplyFault | None``, called before each reply.
    """

    def __init__(
        self,
        policy: Any = None,
        host: str = protocol.DEFAULT_HOST,
        port: int = protocol.DEFAULT_PORT,
        *,
        api_token: str | None = None,
        format: str | None = None,
        protocol_version: str = protocol.N16,
        strict: bool = True,
        array_encoding: str = NPY,
        max_message_bytes: int = SERVER_MAX_REQUEST_BYTES,
        max_array_bytes: int = DecodeLimits.max_array_bytes,
        max_depth: int = DecodeLimits.max_depth,
        writable_arrays: bool = True,
        fault_injector: FaultInjector | None = None,
    ) -> None:
        if array_encoding not in ARRAY_ENCODINGS:
            raise ConfigError(f"option 'array_encoding': expected one of {list(ARRAY_ENCODINGS)}, "
                              f"got {array_encoding!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"option 'port': expected 0-65535 (0 picks a free port), got {port!r}")
        self.array_encoding = array_encoding
        self.writable_arrays = bool(writable_arrays)
        self.limits = DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                                   max_depth=max_depth)
        if fault_injector is not None and not callable(fault_injector):
            raise ConfigError(f"option 'fault_injector': expected f(reply_bytes) -> ReplyFault | None, "
                              f"got {fault_injector!r}")
        self.fault_injector = fault_injector
        if isinstance(policy, str) and policy != NULL_POLICY:
            policy = import_object(policy)
        self.protocol_version = protocol.check_protocol_version(protocol_version)
        if self.protocol_version == protocol.N15 and format is None:
            format = protocol.FLAT
        self.policy = as_served_policy(policy, format=format, strict=strict)
        self.api_token = api_token or None
        self.host, self.port = host, port
        self._endpoints: dict[str, _Endpoint] = {}
        self._running = False
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._context: zmq.Context[Any] | None = None
        self._socket: zmq.Socket[Any] | None = None
        self._endpoint = ""
        self._ready = threading.Event()
        self.requests_served = 0
        self.register_endpoint(protocol.PING, self._ping, requires_input=False)
        self.register_endpoint(protocol.KILL, self._kill, requires_input=False)
        self.register_endpoint(protocol.GET_MODALITY_CONFIG, self._modality_config, requires_input=False)
        if self.protocol_version == protocol.N15:
            self.register_endpoint(protocol.GET_ACTION, self._get_action_n15)
        else:
            self.register_endpoint(protocol.GET_ACTION, self.policy.get_action)
            self.register_endpoint(protocol.RESET, getattr(self.policy, "reset", _empty_reset))

    # -------------------------------------------------------------------------------- endpoints

    def register_endpoint(self, name: str, handler: Callable[..., Any], requires_input: bool = True) -> None:
        """Add (or replace) an endpoint. Handlers with input get the request ``data`` as keyword
        arguments (N1.5: as one positional argument)."""
        self._endpoints[name] = _Endpoint(handler, requires_input)

    @staticmethod
    def _ping() -> dict[str, str]:
        return dict(protocol.PING_REPLY)

    def _kill(self) -> None:
        self._running = False

    def _modality_config(self) -> Any:
        getter = getattr(self.policy, "get_modality_config", None)
        configs = getter() if callable(getter) else {}
        if self.protocol_version == protocol.N15:
            return {name: _n15_config(name, config) for name, config in as_modality_configs(configs).items()}
        if isinstance(configs, Mapping):  # plain field maps go out as ModalityConfig maps, as upstream's do
            converted = as_modality_configs(configs)
            if self.array_encoding == ND:  # N1.7-era servers write the __ModalityConfig__ marker
                converted = {name: dataclasses.replace(config, form=WireForm(MARKER_N17, config.form.payload_key))
                             for name, config in converted.items()}
            return {name: converted.get(str(name), value) for name, value in configs.items()}
        return configs

    def _get_action_n15(self, observation: Any) -> Any:
        result = self.policy.get_action(observation)
        return result[0] if isinstance(result, tuple) and len(result) == 2 else result

    def handle(self, frame: Any) -> bytes:
        """Answer one request frame with the reply frame (what the socket loop sends back)."""
        arrays = self.array_encoding
        try:
            request = decode(frame, writable=self.writable_arrays, limits=self.limits, arrays=(arrays,))
            if not isinstance(request, dict):
                raise ValueError(f"a request must be a map, got {type(request).__name__}")
            if self.api_token is not None and request.get("api_token") != self.api_token:
                return encode({"error": protocol.UNAUTHORIZED}, arrays=arrays)
            name = request.get("endpoint", protocol.GET_ACTION)
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ValueError(f"Unknown endpoint: {name}")
            if not endpoint.requires_input:
                result = endpoint.handler()
            elif self.protocol_version == protocol.N15:
                result = endpoint.handler(request.get("data", {}))
            else:
                result = endpoint.handler(**request.get("data", {}))
            return encode(result, arrays=arrays)
        except Exception as exc:
            logger.warning("GR00T reference server: %s: %s", type(exc).__name__, exc)
            logger.debug("GR00T reference server error", exc_info=True)
            return encode({"error": str(exc)}, arrays=arrays)

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """``tcp://HOST:PORT`` the server is bound to (after :meth:`start`)."""
        return self._endpoint

    def start(self) -> ReferenceServer:
        """Bind and start serving in a background thread; returns once it is serving.

        Raises:
            TransportError: the address cannot be bound (port in use, bad host:
                :func:`~arena_adapters.transport.start_failure`), or the server did not become ready in
                time (:func:`~arena_adapters.transport.wait_ready`).
        """
        if self._thread is not None:
            return self
        address = f"tcp://{self.host}:{self.port if self.port else '*'}"
        self._context = zmq.Context()
        try:
            self._socket = self._bind(address)
        except zmq.ZMQError as exc:
            self._context.term()
            self._context = None
            raise start_failure("GR00T reference server", address, exc) from exc
        self._endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name=f"gr00t-server {self._endpoint}", daemon=True)
        self._thread.start()
        wait_ready(self._ready, Deadline.after(_READY_TIMEOUT_S), "GR00T reference server", self._endpoint)
        logger.info("GR00T reference server listening on %s", self._endpoint)
        return self

    def _bind(self, address: str) -> zmq.Socket[Any]:
        assert self._context is not None
        sock: zmq.Socket[Any] = self._context.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        try:
            sock.bind(address)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        return sock

    def _serve(self) -> None:
        assert self._socket is not None and self._context is not None
        self._ready.set()
        try:
            while self._running and not self._stop_requested.is_set():
                sock = self._socket
                if not sock.poll(_POLL_MS, zmq.POLLIN):
                    continue
                frame = sock.recv(copy=False)
                reply = self.handle(frame.buffer)
                self.requests_served += 1  # counted before the client can see the reply
                self._reply(sock, reply)
        finally:
            self._running = False
            if self._socket is not None:
                self._socket.close(linger=0)
            self._context.term()

    def _reply(self, sock: zmq.Socket[Any], reply: bytes) -> None:
        fault = self.fault_injector(reply) if self.fault_injector is not None else None
        if fault is None:
            sock.send(reply)
        elif fault.kind == "replace":
            sock.send(fault.data)
        elif fault.kind == "trickle":  # a ZeroMQ message arrives whole: when its last byte would have
            data = fault.data or reply
            if not self._stop_requested.wait(fault.interval_s * len(data)):
                sock.send(data)
        else:  # silence, close: the request goes unanswered; a fresh REP socket takes the next one
            sock.close(linger=0)
            self._socket = self._rebind()

    def _rebind(self) -> zmq.Socket[Any]:
        # ZeroMQ releases a closed socket's port in its I/O thread, a moment later.
        deadline = Deadline.after(_READY_TIMEOUT_S)
        while True:
            try:
                return self._bind(self._endpoint)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or deadline.expired:
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join()

    def wait(self) -> None:
        """Block until the server stops (``kill`` endpoint or :meth:`stop`)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.2)

    @property
    def running(self) -> bool:
        """True while the serving thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _empty_reset(options: Any = None) -> dict[str, Any]:
    return {}


def _n15_config(modality: str, config: ModalityConfig) -> ModalityConfig:
    keys = config.modality_keys
    if modality != protocol.LANGUAGE:
        keys = tuple(k if k.startswith(modality + ".") else f"{modality}.{k}" for k in keys)
    return ModalityConfig(config.delta_indices, keys, form=N15_FORM)


def start_reference_server(
    policy: Any = None,
    host: str = protocol.DEFAULT_HOST,
    port: int = protocol.DEFAULT_PORT,
    *,
    api_token: str | None = None,
    format: str | None = None,
    protocol_version: str = protocol.N16,
    strict: bool = True,
    array_encoding: str = NPY,
    max_message_bytes: int = SERVER_MAX_REQUEST_BYTES,
    max_array_bytes: int = DecodeLimits.max_array_bytes,
    max_depth: int = DecodeLimits.max_depth,
    writable_arrays: bool = True,
    fault_injector: FaultInjector | None = None,
) -> ReferenceServer:
    """Start a :class:`ReferenceServer` (factory of the ``gr00t.server`` record); returns once listening."""
    return ReferenceServer(policy, host, port, api_token=api_token, format=format,
                           protocol_version=protocol_version, strict=strict, array_encoding=array_encoding,
                           max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                           max_depth=max_depth, writable_arrays=writable_arrays,
                           fault_injector=fault_injector).start()
