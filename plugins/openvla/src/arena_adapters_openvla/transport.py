"""The HTTP transport: ``POST /act`` with json_numpy bodies, as OpenVLA's and OFT's ``deploy.py`` expect.

A request is a list of per-env payload dicts (one observation per HTTP request, as the server has
no batch axis); the reply is the list of decoded replies in the same order: a bare array (OpenVLA,
one action) or a list of arrays (OFT, an action chunk). A single payload dict gives a single reply.

Built on the transport kit (:class:`~arena_adapters.transport.ClientTransport`): the kit fans the
per-env requests out, up to ``max_concurrency`` at once on keep-alive connections, bounds every
call by its deadline, resends only what cannot have reached the server and closes promptly. This
module supplies the protocol: the request body, the reply's decoding within the limits, what HTTP
statuses and the ``"error"`` reply mean, the health check and the bearer token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from arena_adapters.errors import AdapterError, ConfigError, ProtocolError, ServerError
from arena_adapters.parts import Health
from arena_adapters.transport import (
    ClientTransport,
    Deadline,
    DecodeLimits,
    RetryPolicy,
    parse_endpoint,
)
from arena_adapters_openvla import codec
from arena_adapters_openvla.http_connection import HttpConnection, HttpReply, HttpRequest, tls_context

ACT_PATH = "/act"
"""The route of ``deploy.py``."""
HEALTH_PATH = "/openapi.json"
"""What the health check reads (``deploy.py`` has no health route; FastAPI serves this)."""
OPENVLA_PORT = 8000
"""Upstream OpenVLA's port, the default of ``http`` endpoints."""
OFT_PORT = 8777
"""Upstream OpenVLA-OFT's port."""
HTTPS_PORT = 443

SERVER_ERROR_BODY = "error"
"""What ``deploy.py`` answers (HTTP 200, as a JSON string) when its handler raised anything."""

MAX_REPLY_BYTES = 16 * 2**20
"""The default reply cap: an OpenVLA action is ~100 bytes of JSON, an OFT chunk a few KB."""

_STATUS_HINTS = {
    404: "no such route: is this an OpenVLA deploy.py server (it serves POST /act)?",
    405: "method not allowed: is this an OpenVLA deploy.py server (it serves POST /act)?",
    413: "the request is larger than the server accepts",
    422: "the server could not read the body as a JSON object",
}


class HttpTransport(ClientTransport):
    """An :class:`~arena_adapters.parts.InferenceTransport` for OpenVLA / OpenVLA-OFT deploy servers.

    Args:
        endpoint: ``http://HOST:PORT`` or ``https://HOST[:PORT][/prefix]`` of one server (``/act``
            at the end is dropped; the port defaults to 8000, or 443 for ``https``). Replicas
            (several endpoints) are the policy's business: it builds one transport per endpoint.
        timeout: the default budget of one call in seconds: connecting, sending and the whole
            reply; a server that does not finish in time raises
            :class:`~arena_adapters.errors.TransportTimeout`.
        max_concurrency: per-env requests in flight at once (each on its own keep-alive connection).
        encoded: send the double-encoded form ``{"encoded": "<json_numpy text>"}`` and decode the
            string reply twice (for servers reached through layers that mangle nested JSON).
        api_key: a bearer token sent with every request in ``api_key_header`` (as ``Bearer KEY``
            when that header is ``Authorization``): the reference server's ``api_key``, or a proxy's.
        api_key_header: the header that carries ``api_key``.
        ca_file: a PEM file of certificate authorities to trust for ``https`` endpoints.
        verify: check the ``https`` server's certificate and host name (``False``: accept any).
        max_message_bytes, max_array_bytes, max_depth: decode limits of replies.
        retry_attempts, retry_backoff: resends of requests that cannot have reached the server.

    Nothing connects until :meth:`connect` or the first request.
    """

    protocol_title = "OpenVLA"
    schemes = ("http", "https")
    default_port = {"http": OPENVLA_PORT, "https": HTTPS_PORT}
    endpoint_path = True
    per_env_requests = True

    def __init__(
        self,
        endpoint: str = "http://127.0.0.1:8000",
        timeout: float = 30.0,
        max_concurrency: int = 16,
        encoded: bool = False,
        api_key: str | None = None,
        api_key_header: str = "Authorization",
        ca_file: str | None = None,
        verify: bool = True,
        max_message_bytes: int = MAX_REPLY_BYTES,
        max_array_bytes: int = DecodeLimits.max_array_bytes,
        max_depth: int = DecodeLimits.max_depth,
        retry_attempts: int = 2,
        retry_backoff: float = 0.05,
    ) -> None:
        if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(f"option 'timeout': expected seconds > 0, got {timeout!r}")
        if int(max_concurrency) < 1:
            raise ConfigError(f"option 'max_concurrency': expected an int >= 1, got {max_concurrency!r}")
        self._headers = {"Content-Type": "application/json", **_auth_headers(api_key, api_key_header)}
        limits = DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                              max_depth=max_depth)
        super().__init__(
            _base_url(endpoint),
            timeout=timeout,
            limits=limits,
            retry=RetryPolicy(attempts=retry_attempts, backoff=retry_backoff),
            max_concurrency=int(max_concurrency),
            credentials=bool(api_key),
        )
        self.max_concurrency = int(max_concurrency)
        self.encoded = bool(encoded)
        self._tls = tls_context(ca_file, verify) if self.endpoint.is_secure else None

    # ------------------------------------------------------------------------------ the protocol

    def open_connection(self, deadline: Deadline) -> HttpConnection:
        """A keep-alive HTTP connection to the server, connected now."""
        return HttpConnection.open(self.endpoint, deadline, self._headers, self.limits.max_message_bytes,
                                   self._tls, _status_error)

    def encode(self, message: Any) -> HttpRequest:
        """``POST /act`` with the json_numpy body of one env's payload (double-encoded if ``encoded``)."""
        body = codec.encode_double(message) if self.encoded else codec.encode(message)
        return HttpRequest("POST", ACT_PATH, body)

    def decode(self, data: bytes) -> Any:
        """The action(s) in a reply body; ``"error"`` is the server's own failure.

        Raises:
            ServerError: the server answered ``"error"`` (its handler raised).
            ProtocolError: the body is not json_numpy within the limits, or not the expected form.
        """
        reply = codec.decode(data, limits=self.limits)
        if isinstance(reply, str) and reply == SERVER_ERROR_BODY:
            raise ServerError(
                f'OpenVLA server {self.endpoint}{ACT_PATH} answered "error": its handler raised (the traceback is '
                f"in the server log); check the request keys, shapes and dtypes",
                server_message=SERVER_ERROR_BODY,
            )
        if self.encoded:
            if not isinstance(reply, str):
                raise ProtocolError(f"expected a JSON string reply to the encoded form, got {type(reply).__name__}")
            return codec.decode(reply, limits=self.limits)
        if isinstance(reply, str):
            raise ProtocolError(f"unexpected string reply {reply[:200]!r}")
        return reply

    # ------------------------------------------------------------------------------ the API

    def health(self, deadline: Deadline | None = None) -> Health:
        """``GET /openapi.json`` (the servers have no health route) must list ``POST /act``.
        Never raises."""
        deadline = self.deadline(deadline)
        started = deadline.remaining()
        try:
            document = self.exchange(HttpRequest("GET", HEALTH_PATH), deadline, "health")
            problem = _openapi_problem(document)
        except AdapterError as error:
            problem = str(error)
        latency = started - deadline.remaining()
        if problem:
            return Health(ok=False, detail=f"{self.endpoint}{HEALTH_PATH}: {problem}", latency_s=latency)
        return Health(ok=True, detail=f"POST {ACT_PATH} served by {self.endpoint}", latency_s=latency)


def _base_url(endpoint: str) -> str:
    """``endpoint`` with its default port written out and without a trailing ``/act``."""
    if not isinstance(endpoint, str):
        raise ConfigError(f"option 'endpoint': expected one address like http://HOST:PORT, got {endpoint!r}")
    parsed = parse_endpoint(endpoint, schemes=HttpTransport.schemes, allow_path=True,
                            default_port=HttpTransport.default_port)
    if parsed.path.endswith(ACT_PATH):
        parsed = replace(parsed, path=parsed.path[: -len(ACT_PATH)])
    if any(ord(char) <= 32 or ord(char) >= 127 or char in "?#" for char in parsed.path):
        raise ConfigError(f"option 'endpoint': the path {parsed.path!r} in {endpoint!r} must be plain URL text")
    return parsed.url


def _auth_headers(api_key: str | None, header: str) -> dict[str, str]:
    if not api_key:
        return {}
    if not header or not all(char.isascii() and (char.isalnum() or char in "-_") for char in header):
        raise ConfigError(f"option 'api_key_header': expected an HTTP header name, got {header!r}")
    if any(ord(char) < 32 or ord(char) >= 127 for char in api_key):
        raise ConfigError("option 'api_key': expected printable ASCII text (the value is not shown)")
    return {header: f"Bearer {api_key}" if header.lower() == "authorization" else api_key}


def _status_error(reply: HttpReply) -> AdapterError:
    """A non-200 reply: 401/403 is the server refusing us (ServerError), the rest break the protocol.

    None is retryable: the server received the request.
    """
    excerpt = reply.body[:300].decode("utf-8", "replace").strip()
    text = f"{reply.url} answered HTTP {reply.status} {reply.reason}".rstrip()
    if reply.status in (401, 403):
        return ServerError(f"{text} (not authorised: check the api_key option)", server_message=excerpt or text)
    hint = _STATUS_HINTS.get(reply.status, "server failure" if reply.status >= 500 else "")
    return ProtocolError(text + (f" ({hint})" if hint else "") + (f": {excerpt}" if excerpt else ""))


def _openapi_problem(document: bytes) -> str:
    """``""`` when ``document`` is an OpenAPI document listing ``POST /act``, else what is wrong."""
    try:
        operations = json.loads(document)["paths"][ACT_PATH]
    except (ValueError, KeyError, TypeError, RecursionError):
        return f"not an OpenAPI document with a {ACT_PATH} route"
    if not isinstance(operations, Mapping) or "post" not in operations:
        return f"{ACT_PATH} does not accept POST"
    return ""

