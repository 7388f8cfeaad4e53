"""The reference server: one ``POST /act`` route that behaves like OpenVLA's and OFT's ``deploy.py``.

Same app stack as upstream (FastAPI under uvicorn, with httptools as ``uvicorn[standard]`` brings it;
h11 where it is missing) and the same behaviour:

- the body is a JSON object with json_numpy arrays; the handler runs on a pool of threads with no
  lock, so concurrent requests are concurrent policy calls (as on the real server);
- the reply is the policy's return value as json_numpy JSON with compact separators: a bare array
  (OpenVLA) or a list of arrays (OFT);
- ``{"encoded": "<json_numpy text>"}`` as the only key is decoded first, and the reply is then a JSON
  string holding the json_numpy text of the action;
- any exception in the handler (missing key, policy failure) answers HTTP 200 with the body
  ``"error"`` and logs the traceback; a body that is not JSON answers 422 and ``GET /act`` 405 (both
  from FastAPI itself); ``GET /openapi.json`` answers 200 (the server has no health route).

Well-formed ``POST /act`` requests (a JSON content type, a ``Content-Length`` within the cap, a
body that decodes to an object) are served by a bare ASGI layer in front of the FastAPI app
(:class:`~arena_adapters_openvla.act_route.ActRoute`) with the same handler and the same reply
bytes; FastAPI's routing, middlewares and request validation cost more per request than the
decode, the policy and the encode together. Below ASGI, each connection starts on
:class:`~arena_adapters_openvla.act_protocol.ActProtocol`, which serves those requests without
uvicorn's per-request ASGI work and hands the connection to uvicorn at the first request it does
not take. Every other request goes to FastAPI, which answers it as upstream does.

Unlike upstream it never monkeypatches the ``json`` module: the app reads bodies with this plugin's
codec through a custom request class, within request limits (a body over ``max_message_bytes`` is
answered 413, from its ``Content-Length`` before it is read; one beyond the decode limits 400). It
can require a bearer token (``api_key``: 401 otherwise), and a ``fault_injector`` turns its replies
hostile for tests (:class:`ReplyGuard`). Start-up failures are the core's TransportErrors
(:func:`~arena_adapters.transport.start_failure`).

The policy is any callable ``policy(payload: dict) -> np.ndarray | list[np.ndarray]`` (payload as
the upstream model code gets it: ``image``/``instruction``/``unnorm_key``, or the OFT observation),
or an object with such a ``predict_action`` (OpenVLA's method name) or ``get_server_action``
(OFT's) method; a class is instantiated without arguments first. ``None`` serves the deterministic
dummy policy of the golden captures (see :mod:`arena_adapters_openvla.dummy_policy`), ``"null"``
a constant action (chunk) at no cost.

Requires the ``server`` extra (``pip install arena-adapters-openvla[server]``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import queue
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from arena_adapters.errors import ConfigError
from arena_adapters.importing import import_object
from arena_adapters.records import NULL_POLICY
from arena_adapters.transport import (
    BIND_ERRORS,
    SERVER_MAX_REQUEST_BYTES,
    Deadline,
    DecodeLimits,
    FaultInjector,
    ReplyFault,
    start_failure,
    wait_ready,
)
from arena_adapters_openvla import codec
from arena_adapters_openvla.act_protocol import ActProtocol
from arena_adapters_openvla.act_route import ActRoute, ASGIApp, Message, Receive, Scope, Send
from arena_adapters_openvla.dummy_policy import DummyOftPolicy, DummyOpenVlaPolicy, NullPolicy
from arena_adapters_openvla.transport import ACT_PATH, OFT_PORT, OPENVLA_PORT
from arena_adapters_openvla.variants import VARIANTS

logger = logging.getLogger(__name__)

PolicyFn = Callable[[dict[str, Any]], Any]
T = TypeVar("T")

_ERROR_BODY = b'"error"'
_JSON = "application/json"
SERVER_NAME = "OpenVLA reference server"


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


def handle_act(
    payload: dict[str, Any], policy: PolicyFn, stats: ServerStats, limits: DecodeLimits | None = None
) -> bytes:
    """The ``POST /act`` handler's work, as upstream's ``predict_action``: returns the reply body.

    The inner text of the double-encoded form is decoded within ``limits`` (the request limits).
    """
    try:
        double_encoded = "encoded" in payload
        if double_encoded:
            if len(payload) != 1:
                raise ValueError("Only uses encoded payload!")
            payload = codec.loads(payload["encoded"], limits=limits)
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


class HandlerThreads:
    """The threads the ``POST /act`` handler runs on, all started up front.

    Upstream runs its handler on FastAPI's thread pool, which starts threads on demand (and keeps
    idle ones for a while); these are a fixed number of daemon threads started with the server, so
    that a server in a client's process does not change the client's thread count mid-test, and a
    stuck policy call never holds interpreter exit. Concurrent requests are still concurrent
    policy calls, up to ``count`` at once (FastAPI's default pool has 40).
    """

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
                         for index in range(count)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, function = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function())
                except BaseException as exc:  # handed to the awaiting request
                    future.set_exception(exc)

    async def run(self, function: Callable[[], T]) -> T:
        """``function()`` on one of the threads, awaited."""
        future: Future[T] = Future()
        self._queue.put((future, function))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Let every thread end after its current call. Idempotent; does not wait."""
        for _ in self._threads:
            self._queue.put(None)


def create_app(
    policy: PolicyFn,
    stats: ServerStats | None = None,
    limits: DecodeLimits | None = None,
    threads: HandlerThreads | None = None,
) -> Any:
    """The ASGI app of the reference server: a FastAPI app with the upstream ``POST /act`` route
    backed by ``policy``, behind :class:`~arena_adapters_openvla.act_route.ActRoute`, which serves
    well-formed ``POST /act`` requests itself with the same handler and the same reply.

    Request bodies are read within ``limits``: a body over ``max_message_bytes`` is answered 413
    (from its ``Content-Length`` before it is read, or as soon as it grows past the limit). The
    handler runs on ``threads`` (default: FastAPI's own thread pool, as upstream). The FastAPI app
    is the returned app's ``app`` attribute; ``state.stats`` is the :class:`ServerStats`.
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import Response
    from fastapi.routing import APIRoute
    from starlette.requests import Request

    stats = stats if stats is not None else ServerStats()
    limits = limits or DecodeLimits(max_message_bytes=SERVER_MAX_REQUEST_BYTES)
    cap = limits.max_message_bytes

    def too_large(size: str) -> HTTPException:
        return HTTPException(413, detail=f"request body of {size} bytes exceeds max_message_bytes={cap:,}")

    class JsonNumpyRequest(Request):
        """Reads the JSON body with the json_numpy codec, as upstream does after ``json_numpy.patch()``."""

        async def body(self) -> bytes:
            if not hasattr(self, "_body"):
                declared = self.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise too_large(f"{int(declared):,}")
                chunks, size = [], 0
                async for chunk in self.stream():
                    size += len(chunk)
                    if size > cap:
                        raise too_large(f"more than {cap:,}")
                    chunks.append(chunk)
                self._body = b"".join(chunks)
            return self._body

        async def json(self) -> Any:
            if not hasattr(self, "_json"):
                self._json = codec.loads(await self.body(), limits=limits)
            return self._json

    class JsonNumpyRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Any:
                return await handler(JsonNumpyRequest(request.scope, request.receive))

            return handle

    app = FastAPI()
    app.router.route_class = JsonNumpyRoute

    if threads is None:
        from starlette.concurrency import run_in_threadpool

        async def run_act(payload: dict[str, Any]) -> bytes:
            return await run_in_threadpool(handle_act, payload, policy, stats, limits)
    else:
        pool = threads

        async def run_act(payload: dict[str, Any]) -> bytes:
            return await pool.run(lambda: handle_act(payload, policy, stats, limits))

    async def act(payload: dict[str, Any]) -> Response:
        return Response(content=await run_act(payload), media_type=_JSON)

    app.post(ACT_PATH, response_model=None)(act)
    app.state.stats = stats
    return ActRoute(app, ACT_PATH, lambda body: codec.loads(body, limits=limits), run_act, cap, state=app.state)


class ReplyGuard:
    """The ASGI layer in front of the app: the bearer token, and injected reply faults.

    With ``api_key`` every request must carry ``Authorization: Bearer <api_key>``; others are
    answered 401 before the app sees them. With ``fault_injector``, each ``POST /act`` reply's
    bytes are handed to it before they are sent, and the :class:`~arena_adapters.transport.ReplyFault`
    it returns is obeyed: ``replace`` sends other bytes, ``silence`` sends nothing (until the server
    stops), ``close`` drops the connection, ``trickle`` sends the bytes one every ``interval_s``.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, fault_injector: FaultInjector | None,
                 stopping: threading.Event) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode() if api_key else None
        self.fault_injector = fault_injector
        self._stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._expected is not None and not self._authorised(scope):
            await _send_reply(send, 401, b'{"detail":"Not authenticated"}',
                              [(b"www-authenticate", b"Bearer")])
            return
        if self.fault_injector is None or scope["path"] != ACT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            else:
                await send(message)

        await self.app(scope, receive, capture)
        fault = self.fault_injector(bytes(body))
        await self._reply(fault, start, bytes(body), receive, send)

    async def _client_left(self, receive: Receive) -> bool:
        """Wait until the client disconnects (True) or the server stops (False)."""
        while not self._stopping.is_set():
            try:
                message = await asyncio.wait_for(receive(), 0.05)
            except asyncio.TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return True
        return False

    def _authorised(self, scope: Scope) -> bool:
        assert self._expected is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False

    async def _reply(self, fault: ReplyFault | None, start: Message, body: bytes, receive: Receive,
                     send: Send) -> None:
        if fault is None or fault.kind == "replace":
            data = body if fault is None else fault.data
            await send(_with_length(start, len(data)))
            await send({"type": "http.response.body", "body": data, "more_body": False})
        elif fault.kind == "close":
            await _drop_connection(send)
        elif fault.kind == "silence":
            if not await self._client_left(receive):
                await _drop_connection(send)
        elif fault.kind == "trickle":
            await send(_with_length(start, len(fault.data)))
            for index in range(len(fault.data)):
                if self._stopping.is_set():
                    await _drop_connection(send)
                    return
                await send({"type": "http.response.body", "body": fault.data[index:index + 1], "more_body": True})
                await asyncio.sleep(fault.interval_s)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            raise ValueError(f"unknown reply fault {fault.kind!r}")


def _with_length(start: Message, length: int) -> Message:
    headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
    return {**start, "headers": [*headers, (b"content-length", str(length).encode())]}


async def _send_reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _DropConnection(Exception):
    """Raised after a response start so that the ASGI server closes the connection."""


async def _drop_connection(send: Send) -> None:
    """Close the request's connection without a reply: abort uvicorn's transport (its ``send`` is a
    bound method of the request cycle that holds it; asyncio's or uvloop's, which is no subclass of
    ``asyncio.Transport``), or else make uvicorn close it."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
        await asyncio.sleep(0)  # let the loop report the lost connection before the app returns
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
    raise _DropConnection


class ReferenceServer:
    """A running reference server (see :func:`start_reference_server`).

    Attributes:
        host, port: where it listens.
        stats: its :class:`ServerStats` (requests, errors, policy calls in flight).
        app: the ASGI app it serves (:func:`create_app`'s).
    """

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        host: str,
        access_log: bool,
        log_level: str,
        api_key: str | None = None,
        fault_injector: FaultInjector | None = None,
        threads: HandlerThreads | None = None,
        below_asgi: bool = True,
    ) -> None:
        import uvicorn

        self._threads = threads
        self.app = app
        self.host = host
        self.port = int(sock.getsockname()[1])
        self.stats: ServerStats = app.state.stats
        self._socket = sock
        self._stopping = threading.Event()
        self._ready = threading.Event()
        ready = self._ready

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                ready.set()

        self._server = Server(uvicorn.Config(
            ReplyGuard(app, api_key, fault_injector, self._stopping),
            host=host,
            port=self.port,
            lifespan="off",
            log_config=None,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=2,
            http=_http_protocol(app, api_key) if below_asgi and fault_injector is None and not access_log else "auto",
        ))
        self._thread = threading.Thread(target=self._serve, name=f"openvla-server-{self.port}", daemon=True)
        self._stopped = threading.Event()

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._ready.set()  # also when it failed to start: start() then says so at once

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT``, what the transport's ``endpoint`` option takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving in a background thread; return once it accepts connections.

        Raises:
            TransportError: it did not start within ``timeout`` seconds, or failed to start.
        """
        self._thread.start()
        try:
            wait_ready(self._ready, Deadline.after(timeout), SERVER_NAME, self.endpoint)
            if not self._server.started:
                raise start_failure(SERVER_NAME, self.endpoint, "the server stopped while starting (see its log)")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop serving and free the port. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stopping.set()
        if self._threads is not None:
            self._threads.close()
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


def _http_protocol(app: Any, api_key: str | None) -> Any:
    """uvicorn's ``http`` protocol for the server: :class:`ActProtocol` in front of uvicorn's own
    (for an app made by :func:`create_app`), else uvicorn's."""
    if not isinstance(app, ActRoute):
        return "auto"
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    authorization = f"Bearer {api_key}".encode() if api_key else None
    return functools.partial(ActProtocol, route=app, fallback=AutoHTTPProtocol, authorization=authorization)


def start_reference_server(
    policy: Any = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    variant: str = "openvla",
    chunk_size: int = 8,
    action_dim: int = 7,
    access_log: bool = False,
    log_level: str = "warning",
    api_key: str | None = None,
    max_message_bytes: int = SERVER_MAX_REQUEST_BYTES,
    max_array_bytes: int = DecodeLimits.max_array_bytes,
    max_depth: int = DecodeLimits.max_depth,
    fault_injector: FaultInjector | str | None = None,
    handler_threads: int = 40,
    below_asgi: bool = True,
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
        api_key: require ``Authorization: Bearer <api_key>`` on every request (else 401).
        max_message_bytes, max_array_bytes, max_depth: the limits requests are decoded within
            (a body over ``max_message_bytes`` is answered 413).
        fault_injector: ``fn(reply_bytes) -> ReplyFault | None`` called before each ``POST /act``
            reply (see :class:`ReplyGuard`), or its ``"module:attr"``.
        handler_threads: policy calls that can run at once (:class:`HandlerThreads`).
        below_asgi: serve well-formed ``POST /act`` requests on the connection, below uvicorn's ASGI
            layer (:class:`~arena_adapters_openvla.act_protocol.ActProtocol`); ``False``: every
            request goes through uvicorn's ASGI layer, as upstream's do. Off with
            ``access_log`` or ``fault_injector``, which work at that layer.

    Raises:
        ConfigError: a bad variant or policy.
        TransportError: the server cannot listen on ``host:port``
            (:func:`~arena_adapters.transport.start_failure`) or did not start
            (:func:`~arena_adapters.transport.start_failure`).
    """
    if variant not in VARIANTS:
        raise ConfigError(f"option 'variant': expected one of {list(VARIANTS)}, got {variant!r}")
    if isinstance(fault_injector, str):
        fault_injector = import_object(fault_injector)
    if fault_injector is not None and not callable(fault_injector):
        raise ConfigError(f"option 'fault_injector': expected fn(reply_bytes) -> ReplyFault | None, got "
                          f"{fault_injector!r}")
    fn = resolve_policy(policy, variant=variant, chunk_size=chunk_size, action_dim=action_dim)
    if port is None:
        port = OFT_PORT if variant == "oft" else OPENVLA_PORT
    limits = DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes, max_depth=max_depth)
    address_text = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except BIND_ERRORS as exc:
        raise start_failure(SERVER_NAME, address_text, exc) from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except BIND_ERRORS as exc:
        sock.close()
        raise start_failure(SERVER_NAME, address_text, exc) from None
    threads = HandlerThreads(handler_threads, f"openvla-handler-{sock.getsockname()[1]}")
    server = ReferenceServer(create_app(fn, limits=limits, threads=threads), sock, host, access_log=access_log,
                             log_level=log_level, api_key=api_key, fault_injector=fault_injector, threads=threads,
                             below_asgi=below_asgi)
    server.start()
    return server
