"""A reference openpi policy server that behaves like upstream ``websocket_policy_server.py``.

Wire behaviour (PROTOCOLS.md section 2): ``websockets`` server without compression;
``GET /healthz`` answers ``200 OK``; on connect the server sends its packed metadata map; then each
binary frame is one observation and gets one binary reply, the policy's dict plus
``server_timing`` (``infer_ms``, and ``prev_total_ms`` from the second request on a connection);
any exception sends ``traceback.format_exc()`` as a TEXT frame and closes with code 1011.

Unlike upstream, requests are bounded (``max_message_bytes``, 256 MiB by default, is the WebSocket
frame cap: a larger frame is refused from its header with close code 1009; ``max_array_bytes`` and
``max_depth`` bound what the decoder builds), and ``api_key`` can require
``Authorization: Api-Key <key>`` (a handshake without it gets HTTP 401). A ``fault_injector``
(tests, the conformance kit) is called with each inference reply's bytes and may replace, withhold,
trickle or drop it (:class:`~arena_adapters.transport.ReplyFault`); the metadata frame is never
faulted.

The policy may be:
- an openpi-style policy object with ``infer(obs: dict) -> dict`` (and optionally ``metadata``),
- a plain callable ``policy(obs: dict) -> dict``,
- ``None``: the deterministic :class:`~arena_adapters_openpi.builtin_policy.EchoStatePolicy`;
- ``"null"``: :class:`~arena_adapters_openpi.builtin_policy.NullPolicy`, a constant chunk at no cost.

Like upstream, inference runs on the server's event loop by default, so clients are served one at
a time. ``infer_in_thread=True`` runs it in a pool of ``workers`` threads instead, so concurrent
connections are served concurrently (useful when the policy releases the GIL, e.g. on a GPU).

Start it in-process::

    server = start_server(policy=my_policy, port=0)   # port 0: a free port
    print(server.endpoint)                            # ws://127.0.0.1:PORT
    server.stop()

or from the shell: ``arena-adapters serve openpi --policy module:attr --port 8000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from arena_adapters.errors import ConfigError, ProtocolError
from arena_adapters.importing import import_object
from arena_adapters.records import NULL_POLICY
from arena_adapters.transport import (
    SERVER_MAX_REQUEST_BYTES,
    Deadline,
    DecodeLimits,
    FaultInjector,
    ReplyFault,
    start_failure,
    wait_ready,
)
from arena_adapters_openpi.builtin_policy import EchoStatePolicy, NullPolicy
from arena_adapters_openpi.codec import decode, encode
from arena_adapters_openpi.transport import DEFAULT_PORT

logger = logging.getLogger(__name__)

ERROR_CLOSE_CODE = 1011
ERROR_CLOSE_REASON = "Internal server error. Traceback included in previous frame."
_START_TIMEOUT_S = 10.0


def policy_function(policy: Any) -> Callable[[dict[str, Any]], Any]:
    """The function that runs one inference: ``policy.infer`` if it exists, else ``policy`` itself.

    Raises:
        ConfigError: ``policy`` has no ``infer`` and is not callable.
    """
    if isinstance(policy, str):
        policy = import_object(policy)
    infer = getattr(policy, "infer", None)
    if callable(infer):
        return infer  # type: ignore[no-any-return]
    if callable(policy):
        return policy  # type: ignore[no-any-return]
    raise ConfigError(f"policy: expected an object with infer(obs) or a callable, got {policy!r}")


def _metadata_of(policy: Any, metadata: Any) -> dict[str, Any]:
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"option 'metadata': not valid JSON: {exc}") from None
    if metadata is None:
        metadata = getattr(policy, "metadata", None) or {}
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"option 'metadata': expected a map, got {type(metadata).__name__}")
    return dict(metadata)


class ReferenceServer:
    """A running reference server (see the module docstring). Build it with :func:`start_server`.

    Attributes:
        endpoint: ``ws://HOST:PORT``.
        port: the bound port.
        requests: inferences run so far.
        in_flight: inferences running now.
        max_in_flight: the most inferences that ever ran at the same time.
        connections: WebSocket connections opened so far.
        last_headers: the handshake headers of the most recent connection.
        limits: the bounds on the requests it decodes.
    """

    def __init__(
        self,
        policy: Any = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        metadata: Any = None,
        infer_in_thread: bool = False,
        workers: int = 16,
        api_key: str | None = None,
        action_horizon: int = 10,
        delay: float = 0.0,
        max_message_bytes: int = SERVER_MAX_REQUEST_BYTES,
        max_array_bytes: int = DecodeLimits.max_array_bytes,
        max_depth: int = DecodeLimits.max_depth,
        fault_injector: FaultInjector | None = None,
    ) -> None:
        if policy is None:
            policy = EchoStatePolicy(action_horizon=action_horizon, delay=delay)
        elif isinstance(policy, str) and policy == NULL_POLICY:
            policy = NullPolicy(action_horizon=action_horizon)
        self.policy = policy
        self._infer = policy_function(policy)
        self.metadata = _metadata_of(policy, metadata)
        self.host = host
        self.port = int(port)
        self.api_key = api_key or None
        self.limits = DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                                   max_depth=max_depth)
        if fault_injector is not None and not callable(fault_injector):
            raise ConfigError(
                f"option 'fault_injector': expected a function of the reply bytes, got {fault_injector!r}"
            )
        self.fault_injector = fault_injector
        if infer_in_thread and workers < 1:
            raise ConfigError(f"option 'workers': expected an int >= 1, got {workers!r}")
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="openpi-infer") if infer_in_thread else None
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.last_headers: dict[str, str] = {}
        self._count_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"openpi-server-{port}", daemon=True)

    @property
    def endpoint(self) -> str:
        """The URL clients connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> ReferenceServer:
        """Start serving in a background thread; return once the port is listening.

        Raises:
            TransportError: the port could not be bound, or the server was not ready in time
                (:func:`~arena_adapters.transport.start_failure`).
        """
        self._thread.start()
        wait_ready(self._ready, Deadline.after(_START_TIMEOUT_S), "openpi reference server", self.endpoint)
        if self._start_error is not None:
            raise start_failure("openpi reference server", self.endpoint, self._start_error) from self._start_error
        return self

    def stop(self) -> None:
        """Close all connections, stop serving and free the port. Idempotent."""
        loop, event = self._loop, self._stop_requested
        if loop is not None and event is not None and not self._stopped.is_set():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(event.set)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def wait(self) -> None:
        """Block until the server stops."""
        while not self._stopped.wait(0.5):
            pass

    def __enter__(self) -> ReferenceServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._start_error = exc
            else:
                logger.exception("openpi reference server failed")
        finally:
            self._stopped.set()
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server: Server
        async with serve(
            self._handle,
            self.host,
            self.port,
            compression=None,
            max_size=self.limits.max_message_bytes,
            process_request=self._process_request,
        ) as server:
            self.port = int(server.sockets[0].getsockname()[1])
            self._ready.set()
            await self._stop_requested.wait()

    # ------------------------------------------------------------------------- protocol

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        self.last_headers = dict(request.headers.raw_items())
        if self.api_key is not None and request.headers.get("Authorization") != f"Api-Key {self.api_key}":
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        self.connections += 1
        try:
            await websocket.send(encode(self.metadata))
        except ConnectionClosed:
            return
        prev_total_time: float | None = None
        while True:
            try:
                start_time = time.monotonic()
                obs = self.decode_request(await websocket.recv())
                infer_time = time.monotonic()
                action = await self._run_policy(obs)
                infer_time = time.monotonic() - infer_time
                if not isinstance(action, dict):
                    raise TypeError(f"the policy returned a {type(action).__name__}, expected a dict")
                action = dict(action)
                action["server_timing"] = {"infer_ms": infer_time * 1000}
                if prev_total_time is not None:
                    action["server_timing"]["prev_total_ms"] = prev_total_time * 1000
                await self._reply(websocket, encode(action))
                prev_total_time = time.monotonic() - start_time
            except ConnectionClosed:
                break
            except Exception:
                logger.warning("openpi reference server: request failed", exc_info=True)
                try:
                    await websocket.send(traceback.format_exc())
                    await websocket.close(code=ERROR_CLOSE_CODE, reason=ERROR_CLOSE_REASON)
                except ConnectionClosed:
                    pass
                break

    def decode_request(self, data: bytes | str) -> Any:
        """One request, decoded within :attr:`limits`.

        Raises:
            ProtocolError: not msgpack-numpy, or beyond the limits (the client gets the traceback
                and close code 1011, as for any failed request).
        """
        if isinstance(data, str):
            raise ProtocolError("openpi request: expected a binary frame, got text")
        message = decode(data, self.limits)
        self.limits.check_tree_depth(message, "openpi request")
        return message

    async def _reply(self, websocket: ServerConnection, data: bytes) -> None:
        fault = self.fault_injector(data) if self.fault_injector is not None else None
        if fault is None:
            await websocket.send(data)
        elif fault.kind == "replace":
            await websocket.send(fault.data)
        elif fault.kind == "close":
            websocket.transport.abort()
            raise ConnectionClosed(None, None)
        elif fault.kind == "trickle":
            await _trickle(websocket, fault)
        elif fault.kind != "silence":
            raise ConfigError(f"fault_injector: unknown ReplyFault kind {fault.kind!r}")

    async def _run_policy(self, obs: Any) -> Any:
        with self._count_lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._executor is None:
                return self._infer(obs)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._infer, obs)
        finally:
            with self._count_lock:
                self.in_flight -= 1


async def _trickle(websocket: ServerConnection, fault: ReplyFault) -> None:
    """Write one binary frame holding ``fault.data`` to the socket a byte every ``interval_s``."""
    size = len(fault.data)
    if size < 126:
        header = bytes([0x82, size])
    elif size < 2**16:
        header = bytes([0x82, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x82, 127]) + size.to_bytes(8, "big")
    for byte in header + fault.data:
        if websocket.transport.is_closing():
            raise ConnectionClosed(None, None)
        websocket.transport.write(bytes([byte]))
        await asyncio.sleep(fault.interval_s)


def start_server(
    policy: Any = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    **options: Any,
) -> ReferenceServer:
    """Start a reference server in background threads of this process and return it, listening.

    Args:
        policy: an object with ``infer(obs) -> dict``, a callable, a ``"module:attr"`` string, or
            ``None`` for the built-in :class:`~arena_adapters_openpi.builtin_policy.EchoStatePolicy`.
        host, port: where to listen (``port=0`` picks a free port).
        options: ``metadata`` (map or JSON text; default ``policy.metadata`` or ``{}``),
            ``infer_in_thread``, ``workers``, ``api_key`` (reject handshakes without
            ``Authorization: Api-Key <key>``; the stock server has no auth), the request limits
            ``max_message_bytes``, ``max_array_bytes``, ``max_depth``, ``fault_injector``, and for
            the built-in policy ``action_horizon`` and ``delay``.

    Raises:
        TransportError: the server cannot listen there (see :meth:`ReferenceServer.start`).
    """
    return ReferenceServer(policy, host, port, **options).start()
