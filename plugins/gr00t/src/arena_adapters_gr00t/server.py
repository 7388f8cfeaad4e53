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
  with prefixed keys.

The policy: see :func:`~arena_adapters_gr00t.reference_policy.as_served_policy` (``None`` serves the
deterministic DROID test policy). Start it with :func:`start_reference_server` or
``arena-adapters serve gr00t [--policy module:attr] [--port 5555] [--api-token T] [--format nested]``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq

from arena_adapters.binding import bind_error
from arena_adapters.importing import import_object
from arena_adapters.records import NULL_POLICY
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.codec import decode, encode
from arena_adapters_gr00t.modality import N15_FORM, ModalityConfig, as_modality_configs
from arena_adapters_gr00t.reference_policy import as_served_policy

logger = logging.getLogger(__name__)

_POLL_MS = 100


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
    ) -> None:
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
            return {name: converted.get(str(name), value) for name, value in configs.items()}
        return configs

    def _get_action_n15(self, observation: Any) -> Any:
        result = self.policy.get_action(observation)
        return result[0] if isinstance(result, tuple) and len(result) == 2 else result

    def handle(self, frame: Any) -> bytes:
        """Answer one request frame with the reply frame (what the socket loop sends back)."""
        try:
            request = decode(frame, writable=True)
            if self.api_token is not None and request.get("api_token") != self.api_token:
                return encode({"error": protocol.UNAUTHORIZED})
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
            return encode(result)
        except Exception as exc:
            logger.warning("GR00T reference server: %s: %s", type(exc).__name__, exc)
            logger.debug("GR00T reference server error", exc_info=True)
            return encode({"error": str(exc)})

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """``tcp://HOST:PORT`` the server is bound to (after :meth:`start`)."""
        return self._endpoint

    def start(self) -> ReferenceServer:
        """Bind and start serving in a background thread; returns once the socket is bound.

        Raises:
            TransportError: the address cannot be bound (port in use, bad host).
        """
        if self._thread is not None:
            return self
        self._context = zmq.Context()
        sock = self._context.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        address = f"tcp://{self.host}:{self.port if self.port else '*'}"
        try:
            sock.bind(address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._context.term()
            self._context = None
            raise bind_error("GR00T reference server", address, exc) from exc
        self._socket = sock
        self._endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name=f"gr00t-server {self._endpoint}", daemon=True)
        self._thread.start()
        logger.info("GR00T reference server listening on %s", self._endpoint)
        return self

    def _serve(self) -> None:
        sock = self._socket
        assert sock is not None and self._context is not None
        try:
            while self._running and not self._stop_requested.is_set():
                if not sock.poll(_POLL_MS, zmq.POLLIN):
                    continue
                frame = sock.recv(copy=False)
                reply = self.handle(frame.buffer)
                self.requests_served += 1  # counted before the client can see the reply
                sock.send(reply)
        finally:
            self._running = False
            sock.close(linger=0)
            self._context.term()

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
) -> ReferenceServer:
    """Start a :class:`ReferenceServer` (factory of the ``gr00t.server`` record); returns once listening."""
    return ReferenceServer(policy, host, port, api_token=api_token, format=format,
                           protocol_version=protocol_version, strict=strict).start()
