"""The HTTP transport: ``POST /act`` with json_numpy bodies, as OpenVLA's and OFT's ``deploy.py`` expect.

A request is a list of per-env payload dicts (one observation per HTTP request, as the server has
no batch axis); the reply is the list of decoded replies in the same order: a bare array (OpenVLA,
one action) or a list of arrays (OFT, an action chunk). A single payload dict gives a single reply.

Requests to one server run at most ``max_concurrency`` at a time (default 1: the upstream server
runs concurrent requests as concurrent model calls on one GPU, so overlapping them rarely helps and
can exhaust GPU memory). With several comma-separated endpoints (replicas) the requests are spread
over them round-robin, ``max_concurrency`` per replica.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx
from numpy.typing import NDArray

from arena_adapters.errors import ConfigError, ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters.parts import Health
from arena_adapters_openvla import codec
from arena_adapters_openvla.endpoints import ACT_PATH, HEALTH_PATH, parse_endpoints

SERVER_ERROR_BODY = "error"
"""What ``deploy.py`` answers (HTTP 200, as a JSON string) when its handler raised anything."""

_JSON_HEADERS = {"Content-Type": "application/json"}
_STATUS_HINTS = {
    401: "unauthorized: check the api_key option",
    403: "forbidden: check the api_key option",
    404: "no such route: is this an OpenVLA deploy.py server (it serves POST /act)?",
    405: "method not allowed: is this an OpenVLA deploy.py server (it serves POST /act)?",
    422: "the server could not read the body as a JSON object",
}


class HttpTransport:
    """An :class:`~arena_adapters.parts.InferenceTransport` for OpenVLA / OpenVLA-OFT deploy servers.

    Args:
        endpoint: ``http://HOST:PORT`` of the server, or several comma-separated (replicas).
        timeout: seconds for each HTTP request (connect, send, and wait for the reply); a server
            that does not answer in time raises :class:`~arena_adapters.errors.TransportTimeout`.
        max_concurrency: requests in flight at once per server.
        encoded: send the double-encoded form ``{"encoded": "<json_numpy text>"}`` and decode the
            string reply twice (for servers reached through layers that mangle nested JSON).
        api_key: sent with every request in the ``api_key_header`` header (as ``Bearer KEY`` when
            that header is ``Authorization``), for servers behind an authenticating proxy.
        api_key_header: the header that carries ``api_key``.

    Nothing connects until :meth:`connect` (or the first request); the HTTP connections are kept
    alive and reused.
    """

    def __init__(
        self,
        endpoint: str = "http://127.0.0.1:8000",
        timeout: float = 30.0,
        max_concurrency: int = 1,
        encoded: bool = False,
        api_key: str | None = None,
        api_key_header: str = "Authorization",
    ) -> None:
        self.base_urls = parse_endpoints(endpoint)
        if not timeout or timeout <= 0:
            raise ConfigError(f"option 'timeout': expected seconds > 0, got {timeout!r}")
        if int(max_concurrency) < 1:
            raise ConfigError(f"option 'max_concurrency': expected an int >= 1, got {max_concurrency!r}")
        self.timeout = float(timeout)
        self.max_concurrency = int(max_concurrency)
        self.encoded = bool(encoded)
        self._headers = dict(_JSON_HEADERS)
        if api_key:
            is_bearer = api_key_header.lower() == "authorization"
            self._headers[api_key_header] = f"Bearer {api_key}" if is_bearer else api_key
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._slots: queue.SimpleQueue[int] | None = None

    @property
    def endpoint(self) -> str:
        """The server base URL(s), comma-separated."""
        return ",".join(self.base_urls)

    @property
    def slots(self) -> int:
        """Requests in flight at most: ``max_concurrency`` per replica."""
        return self.max_concurrency * len(self.base_urls)

    # ------------------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        """Create the keep-alive connection pool (no network I/O until the first request)."""
        with self._lock:
            if self._client is not None:
                return
            slots: queue.SimpleQueue[int] = queue.SimpleQueue()
            for _ in range(self.max_concurrency):
                for replica in range(len(self.base_urls)):
                    slots.put(replica)
            self._slots = slots
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=self.slots, max_keepalive_connections=self.slots),
                headers=self._headers,
            )
            if self.slots > 1:
                self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="openvla-http")

    def close(self) -> None:
        """Close every connection and stop the worker threads. Idempotent; :meth:`connect` reopens."""
        with self._lock:
            client, executor = self._client, self._executor
            self._client = self._executor = self._slots = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()

    def __enter__(self) -> HttpTransport:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reset(self, env_ids: NDArray[Any] | None) -> None:
        """Nothing to do: the OpenVLA servers keep no per-episode state."""

    def metadata(self) -> Mapping[str, Any]:
        """``{}``: the OpenVLA servers publish no metadata."""
        return {}

    # ------------------------------------------------------------------------------- requests

    def infer(self, request: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Any:
        """Send each payload as one ``POST /act`` and return the decoded replies in order.

        Args:
            request: a list of per-env payload dicts, or a single payload dict.

        Returns:
            a list with one reply per payload (or the single reply for a single dict): a read-only
            ndarray (OpenVLA) or a list of them (OFT).

        Raises:
            TransportTimeout: a request got no reply within ``timeout``.
            TransportError: the connection failed (refused, reset).
            ServerError: the server answered ``"error"`` (its handler raised).
            ProtocolError: an HTTP status other than 200, or a body that is not json_numpy JSON.
            EncodeError: a payload holds something JSON cannot carry.
        """
        if self._client is None:
            self.connect()
        if isinstance(request, Mapping):
            return self._send_in_slot(request)
        payloads = list(request)
        if self._executor is None or len(payloads) <= 1:
            return [self._send_in_slot(payload) for payload in payloads]
        futures = [self._executor.submit(self._send_in_slot, payload) for payload in payloads]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in futures if future in done and future.exception() is not None]
        if failed:
            for future in pending:
                future.cancel()
            raise _exception_of(failed[0])
        return [future.result() for future in futures]

    def _send_in_slot(self, payload: Mapping[str, Any]) -> Any:
        slots, client = self._slots, self._client
        if slots is None or client is None:
            raise TransportError("the OpenVLA transport is closed")
        replica = slots.get()
        try:
            return self._send(client, self.base_urls[replica], payload)
        finally:
            slots.put(replica)

    def _send(self, client: httpx.Client, base_url: str, payload: Mapping[str, Any]) -> Any:
        body = codec.encode_double(payload) if self.encoded else codec.encode(payload)
        url = base_url + ACT_PATH
        response = self._post(client, url, body)
        if response.status_code != 200:
            raise ProtocolError(_status_message(url, response))
        try:
            reply = codec.decode(response.content)
        except codec.DecodeError as exc:
            raise ProtocolError(f"undecodable reply from {url}: {exc}") from exc
        if isinstance(reply, str) and reply == SERVER_ERROR_BODY:
            raise ServerError(
                f'OpenVLA server {url} answered "error": its handler raised (the traceback is in the server log); '
                f"check the request keys, shapes and dtypes",
                server_message=SERVER_ERROR_BODY,
            )
        if self.encoded:
            if not isinstance(reply, str):
                raise ProtocolError(
                    f"{url}: expected a JSON string reply to the encoded form, got {type(reply).__name__}"
                )
            try:
                return codec.decode(reply)
            except codec.DecodeError as exc:
                raise ProtocolError(f"undecodable inner reply from {url}: {exc}") from exc
        if isinstance(reply, str):
            raise ProtocolError(f"{url}: unexpected string reply {reply[:200]!r}")
        return reply

    def _post(self, client: httpx.Client, url: str, body: bytes) -> httpx.Response:
        for attempt in range(2):
            try:
                return client.post(url, content=body)
            except httpx.TimeoutException as exc:
                raise TransportTimeout(
                    f"no reply from {url} within {self.timeout:g} s ({type(exc).__name__})"
                ) from exc
            except httpx.RemoteProtocolError as exc:
                # A kept-alive connection the server closed just as it was reused: send once more.
                if attempt:
                    raise TransportError(f"connection to {url} broke: {exc}") from exc
            except httpx.ConnectError as exc:
                raise TransportError(f"cannot connect to {url}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise TransportError(f"request to {url} failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --------------------------------------------------------------------------------- health

    def health(self) -> Health:
        """``GET /openapi.json`` of every server (they have no health route) and check that it
        lists ``POST /act``. Never raises for server faults."""
        if self._client is None:
            self.connect()
        client = self._client
        assert client is not None
        started = time.perf_counter()
        problems = []
        for base_url in self.base_urls:
            problem = _openapi_problem(client, base_url + HEALTH_PATH)
            if problem:
                problems.append(problem)
        latency = time.perf_counter() - started
        if problems:
            return Health(ok=False, detail="; ".join(problems), latency_s=latency)
        return Health(ok=True, detail=f"POST {ACT_PATH} served by {self.endpoint}", latency_s=latency)


def _openapi_problem(client: httpx.Client, url: str) -> str:
    """``""`` when ``url`` is an OpenAPI document listing ``POST /act``, else what is wrong."""
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        return f"{url}: no reply within the timeout"
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"{url}: HTTP {response.status_code}"
    try:
        document = json.loads(response.content)
        operations = document["paths"][ACT_PATH]
    except (ValueError, KeyError, TypeError):
        return f"{url}: not an OpenAPI document with a {ACT_PATH} route"
    if not isinstance(operations, Mapping) or "post" not in operations:
        return f"{url}: {ACT_PATH} does not accept POST"
    return ""


def _status_message(url: str, response: httpx.Response) -> str:
    hint = _STATUS_HINTS.get(response.status_code, "server failure" if response.status_code >= 500 else "")
    excerpt = response.text[:300].strip()
    return f"{url} answered HTTP {response.status_code} {response.reason_phrase}" + (
        f" ({hint})" if hint else ""
    ) + (f": {excerpt}" if excerpt else "")


def _exception_of(future: Future[Any]) -> BaseException:
    exception = future.exception()
    assert exception is not None
    return exception
