"""The openpi client transport, built on the core's transport kit.

An openpi server takes ONE observation per request and answers in lockstep on each connection, so
the transport declares ``per_env_requests``: a multi-env request (a list of per-env observations)
is fanned out by the kit over up to ``max_concurrency`` pooled connections, and the replies come
back in env order. Replicas of a server are the core's job (one transport per endpoint).

What is openpi's own here: the WebSocket :class:`~arena_adapters_openpi.connection.WebsocketConnection`
(no thread of its own: the calling thread writes and reads every frame; metadata frame on
connect, traceback text frame + close 1011 as :class:`~arena_adapters.errors.ServerError`), the
msgpack-numpy codec within the
:class:`~arena_adapters.transport.DecodeLimits`, ``GET /healthz`` and the ``Api-Key`` header.

The kit keeps the promises: one deadline per call bounds every wait; only what cannot have reached
the server (refused, or a connection found closed before sending) is resent; ``close()`` aborts
requests in flight at once. The keepalive pong timeout defaults to at least ``timeout``, so a long
first inference on a server that blocks its event loop (the upstream one does) survives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arena_adapters.errors import ConfigError
from arena_adapters.parts import Health
from arena_adapters.transport import ClientTransport, Deadline, DecodeLimits, RetryPolicy
from arena_adapters.transport.limits import MiB
from arena_adapters_openpi.codec import decode, encode
from arena_adapters_openpi.connection import ConnectionSettings, OpeningSockets, WebsocketConnection, tls_context
from arena_adapters_openpi.health import check_health

DEFAULT_PORT = 8000
DEFAULT_ENDPOINT = f"ws://127.0.0.1:{DEFAULT_PORT}"


class WebsocketTransport(ClientTransport):
    """:class:`~arena_adapters.parts.InferenceTransport` for openpi policy servers.

    ``infer`` takes one observation dict (returns one reply dict) or a list of per-env observation
    dicts (returns the list of replies, in the same order, fetched concurrently).

    Args:
        endpoint: ``ws://HOST:PORT`` or ``wss://HOST:PORT`` (no port: 8000), one server.
        timeout: seconds for one request, resends included.
        connect_timeout: the longest TCP connect + handshake + metadata frame (within ``timeout``).
        api_key: sent as ``Authorization: Api-Key <key>`` (the stock server ignores it).
        max_concurrency: per-env requests in flight at once (the connection pool size).
        retry_attempts: resends of a request that cannot have reached the server.
        retry_backoff: seconds before the first resend, doubled each time (with jitter).
        keepalive_interval: seconds of silence from the server, while a reply is awaited, before a
            keepalive ping; 0 disables pings. Connections have no thread: an idle one answers the
            server's pings when next handed out, and one the server closed meanwhile is replaced.
        keepalive_timeout: seconds to wait for a pong; default ``max(20, timeout)``.
        max_message_bytes: the largest reply or metadata frame accepted (refused from its header).
        max_array_bytes: the largest array in a reply accepted.
        max_depth: the deepest nesting of a reply.
        ca_file: a PEM file of the CA that signed a ``wss://`` server's certificate.
        verify_tls: check a ``wss://`` server's certificate (turn off only for testing).
    """

    protocol_title = "openpi"
    schemes = ("ws", "wss")
    default_port = {"ws": DEFAULT_PORT, "wss": 443}
    endpoint_path = True
    per_env_requests = True

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        api_key: str | None = None,
        max_concurrency: int = 16,
        retry_attempts: int = 2,
        retry_backoff: float = 0.05,
        keepalive_interval: float = 20.0,
        keepalive_timeout: float | None = None,
        max_message_bytes: int = 64 * MiB,
        max_array_bytes: int = 64 * MiB,
        max_depth: int = DecodeLimits.max_depth,
        ca_file: str | None = None,
        verify_tls: bool = True,
    ) -> None:
        _check_positive("timeout", timeout)
        _check_positive("connect_timeout", connect_timeout)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(f"option 'max_concurrency': expected an int >= 1, got {max_concurrency!r}")
        if retry_attempts < 0 or retry_backoff < 0:
            raise ConfigError("options 'retry_attempts' and 'retry_backoff' must be >= 0, "
                              f"got {retry_attempts!r} and {retry_backoff!r}")
        super().__init__(
            endpoint,
            timeout=timeout,
            limits=DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                                max_depth=max_depth),
            retry=RetryPolicy(attempts=int(retry_attempts), backoff=float(retry_backoff)),
            max_concurrency=max_concurrency,
            credentials=bool(api_key),
        )
        try:
            tls = tls_context(self.endpoint, ca_file, verify_tls)
        except OSError as exc:
            raise ConfigError(f"option 'ca_file': cannot read CA certificates from {ca_file!r}: {exc}") from None
        self.settings = ConnectionSettings(
            api_key=api_key or None,
            connect_timeout=float(connect_timeout),
            keepalive_interval=float(keepalive_interval) if keepalive_interval else None,
            keepalive_timeout=float(keepalive_timeout) if keepalive_timeout else max(20.0, self.timeout),
            max_message_bytes=self.limits.max_message_bytes,
            tls=tls,
        )
        self._opening = OpeningSockets()
        self._metadata: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------ the protocol's part

    def open_connection(self, deadline: Deadline) -> WebsocketConnection:
        """Connect, handshake and read the metadata frame (cached for :meth:`metadata`)."""
        connection = WebsocketConnection.open(
            self.endpoint, self.settings, deadline, self._decode_metadata, self._opening
        )
        self._metadata = connection.metadata
        return connection

    def encode(self, message: Any) -> bytes:
        """The msgpack-numpy bytes of one observation."""
        return encode(message)

    def decode(self, data: bytes) -> Any:
        """One reply, decoded within :attr:`limits`."""
        message = decode(data, self.limits)
        self.limits.check_tree_depth(message, "openpi message")
        return message

    def _decode_metadata(self, data: bytes) -> Any:
        return self.decode_reply(data, "metadata frame")

    # ---------------------------------------------------------------------- openpi's extras

    def metadata(self, deadline: Deadline | None = None) -> Mapping[str, Any]:
        """The server's metadata frame, read on the first connection (connects if needed)."""
        if self._metadata is None:
            self.connect(deadline)
        return self._metadata or {}

    def health(self, deadline: Deadline | None = None) -> Health:
        """``GET /healthz`` by the deadline; ok if it answers 200. Never raises."""
        deadline = self.deadline(deadline)
        if self.closed:
            return Health(ok=False, detail=f"the openpi transport for {self.endpoint} is closed", latency_s=0.0)
        return check_health(self.endpoint, deadline, self.settings.headers(), self.settings.tls)

    def close(self) -> None:
        """Abort requests in flight and connections being opened; release every socket and
        thread. Final, prompt and idempotent."""
        self._opening.close()
        super().close()


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"option {name!r}: expected a number > 0, got {value!r}")
