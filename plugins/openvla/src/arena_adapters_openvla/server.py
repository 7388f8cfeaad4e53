"""The reference server: one ``POST /act`` route that behaves like OpenVLA's and OFT's ``deploy.py``.

Same app stack as upstream (FastAPI under uvicorn) and the same behaviour:

- the body is a JSON object with json_numpy arrays; the handler runs in FastAPI's thread pool with
  no lock, so concurrent requests are concurrent policy calls (as on the real server);
- the reply is the policy's return value as json_numpy JSON with compact separators: a bare array
  (OpenVLA) or a list of arrays (OFT);
- ``{"encoded": "<json_numpy text>"}`` as the only key is decoded first, and the reply is then a JSON
  string holding the json_numpy text of the action;
- any exception in the handler (missing key, policy failure) answers HTTP 200 with the body
  ``"error"`` and logs the traceback; a body that is not JSON answers 422 and ``GET /act`` 405 (both
  from FastAPI itself); ``GET /openapi.json`` answers 200 (the server has no health route).

Unlike upstream it never monkeypatches the ``json`` module: the app reads bodies with this plugin's
codec through a custom request class.

The policy is any callable ``policy(payload: dict) -> np.ndarray | list[np.ndarray]`` (payload as
the upstream model code gets it: ``image``/``instruction``/``unnorm_key``, or the OFT observation),
or an object with such a ``predict_action`` (OpenVLA's method name) or ``get_server_action``
(OFT's) method; a class is instantiated without arguments first. ``None`` serves the deterministic
dummy policy of the golden captures (see :mod:`arena_adapters_openvla.dummy_policy`), ``"null"``
a constant action (chunk) at no cost.

Requires the ``server`` extra (``pip install arena-adapters-openvla[server]``).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from arena_adapters.binding import BIND_ERRORS, bind_error
from arena_adapters.errors import ConfigError, TransportError
from arena_adapters.importing import import_object
from arena_adapters.records import NULL_POLICY
from arena_adapters_openvla import codec
from arena_adapters_openvla.dummy_policy import DummyOftPolicy, DummyOpenVlaPolicy, NullPolicy
from arena_adapters_openvla.endpoints import ACT_PATH, OFT_PORT, OPENVLA_PORT
from arena_adapters_openvla.variants import VARIANTS

logger = logging.getLogger(__name__)

PolicyFn = Callable[[dict[str, Any]], Any]

_ERROR_BODY = b'"error"'
_JSON = "application/json"


def resolve_policy(policy: Any, variant: str = "openvla", chunk_size: int = 8, action_dim: int = 7) -> PolicyFn:
    """The callable the server calls with each decoded payload.

    Raises:
        ConfigError: ``policy`` is neither callable nor has a ``predict_action``/``get_server_action`` method.
    """
    if isinstance(policy, str) and policy == NULL_POLICY:
        return NullPolicy(variant=variant, chunk_size=chunk_size, action_dim=action_dim)
    if policy is None:
        if variant == "oft":
            return DummyOftPolicy(chunk_size=chunk_size, action_dim=action_dim)
        return DummyOpenVlaPolicy()
    if isinstance(policy, str):
        policy = import_object(policy)
    if isinstance(policy, type):
        policy = policy()
    for method in ("predict_action", "get_server_action"):
        bound = getattr(policy, method, None)
        if callable(bound):
            return bound  # type: ignore[no-any-return]
    if callable(policy):
        return policy  # type: ignore[no-any-return]
    raise ConfigError(
        f"policy {policy!r}: expected a callable policy(payload) -> action(s), or an object with "
        f"predict_action(payload) or get_server_action(payload)"
    )


class ServerStats:
    """Counters of a running reference server (thread-safe).

    Attributes:
        requests: ``POST /act`` requests handled (including those answered ``"error"``).
        errors: requests answered ``"error"``.
        in_flight: policy calls running now.
        max_in_flight: the most policy calls that ever ran at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def call(self, policy: PolicyFn, payload: dict[str, Any]) -> Any:
        """Run ``policy(payload)``, counting it as in flight meanwhile."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return policy(payload)
        finally:
            with self._lock:
                self.in_flight -= 1

    def count(self, failed: bool) -> None:
        with self._lock:
            self.requests += 1
            self.errors += int(failed)


def _to_wire(value: Any) -> Any:
    """Torch tensors (in the reply or inside a list of them) become numpy arrays."""
    torch = sys.modules.get("torch")  # a policy that returns tensors has imported it
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().to("cpu").numpy()
    if isinstance(value, (list, tuple)):
        return [_to_wire(item) for item in value]
    return value


def handle_act(payload: dict[str, Any], policy: PolicyFn, stats: ServerStats) -> bytes:
    """The ``POST /act`` handler's work, as upstream's ``predict_action``: returns the reply body."""
    try:
        double_encoded = "encoded" in payload
        if double_encoded:
            if len(payload) != 1:
                raise ValueError("Only uses encoded payload!")
            payload = codec.loads(payload["encoded"])
            if not isinstance(payload, dict):
                raise TypeError(f"the encoded payload is a {type(payload).__name__}, not an object")
        action = _to_wire(stats.call(policy, payload))
        if double_encoded:
            body = codec.encode_json_string(codec.encode(action, separators=codec.REQUEST_SEPARATORS))
        else:
            body = codec.encode(action, separators=codec.REPLY_SEPARATORS)
    except Exception:
        logger.exception(
            "the request raised an error; make sure it complies with the expected format: "
            "{'image': np.ndarray, 'instruction': str} (OpenVLA) or the OFT observation dict"
        )
        stats.count(failed=True)
        return _ERROR_BODY
    stats.count(failed=False)
    return body


def create_app(policy: PolicyFn, stats: ServerStats | None = None) -> Any:
    """A FastAPI app with the upstream ``POST /act`` route backed by ``policy``."""
    from fastapi import FastAPI
    from fastapi.responses import Response
    from fastapi.routing import APIRoute
    from starlette.requests import Request

    stats = stats if stats is not None else ServerStats()

    class JsonNumpyRequest(Request):
        """Reads the JSON body with the json_numpy codec, as upstream does after ``json_numpy.patch()``."""

        async def json(self) -> Any:
            if not hasattr(self, "_json"):
                self._json = codec.loads(await self.body())
            return self._json

    class JsonNumpyRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Any:
                return await handler(JsonNumpyRequest(request.scope, request.receive))

            return handle

    app = FastAPI()
    app.router.route_class = JsonNumpyRoute

    def act(payload: dict[str, Any]) -> Response:
        return Response(content=handle_act(payload, policy, stats), media_type=_JSON)

    app.post(ACT_PATH, response_model=None)(act)
    app.state.stats = stats
    return app


class ReferenceServer:
    """A running reference server (see :func:`start_reference_server`).

    Attributes:
        host, port: where it listens.
        stats: its :class:`ServerStats` (requests, errors, policy calls in flight).
    """

    def __init__(self, app: Any, sock: socket.socket, host: str, access_log: bool, log_level: str) -> None:
        import uvicorn

        self.host = host
        self.port = int(sock.getsockname()[1])
        self.stats: ServerStats = app.state.stats
        self._socket = sock
        self._server = uvicorn.Server(uvicorn.Config(
            app,
            host=host,
            port=self.port,
            lifespan="off",
            log_config=None,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=2,
        ))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"openvla-server-{self.port}", daemon=True
        )
        self._stopped = threading.Event()

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT``, what the transport's ``endpoint`` option takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving in a background thread; return once it accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._socket.close()
                raise TransportError(f"the OpenVLA reference server on {self.endpoint} failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise TransportError(f"the OpenVLA reference server on {self.endpoint} did not start in {timeout} s")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving and free the port. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._socket.close()

    def wait(self) -> None:
        """Block until the server stops."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> ReferenceServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_reference_server(
    policy: Any = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    variant: str = "openvla",
    chunk_size: int = 8,
    action_dim: int = 7,
    access_log: bool = False,
    log_level: str = "warning",
) -> ReferenceServer:
    """Start an OpenVLA-compatible ``POST /act`` server in a background thread and return it listening.

    Args:
        policy: a callable ``policy(payload) -> action(s)``, an object with ``predict_action`` or
            ``get_server_action``, a class of such objects, or ``"module:attr"``; ``None`` for the
            deterministic dummy policy of ``variant``.
        host: the address to bind (loopback by default).
        port: the port; ``None`` for upstream's default (8000, or 8777 for OFT), 0 for a free one.
        variant: ``"openvla"`` or ``"oft"``: which dummy policy serves when ``policy`` is ``None``.
        chunk_size, action_dim: the OFT dummy policy's chunk shape (LIBERO 8x7, ALOHA 25x14, BRIDGE 5x7).
        access_log: log every request (uvicorn's access log).
        log_level: uvicorn's log level.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"option 'variant': expected one of {list(VARIANTS)}, got {variant!r}")
    fn = resolve_policy(policy, variant=variant, chunk_size=chunk_size, action_dim=action_dim)
    if port is None:
        port = OFT_PORT if variant == "oft" else OPENVLA_PORT
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except BIND_ERRORS as exc:
        raise bind_error("OpenVLA reference server", f"{host}:{port}", exc) from exc
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except BIND_ERRORS as exc:
        sock.close()
        raise bind_error("OpenVLA reference server", f"{host}:{port}", exc) from exc
    server = ReferenceServer(create_app(fn), sock, host, access_log=access_log, log_level=log_level)
    server.start()
    return server

