"""The openpi client transport: a pool of WebSocket connections over one or several servers.

An openpi server takes ONE observation per request and answers in lockstep on each connection, so
a multi-env request (a list of per-env observations) is fanned out concurrently over a bounded pool
of connections, and the replies are returned in env order. With several endpoints (replicas of the
same policy server) env ``i`` goes to replica ``i % n`` first, and to the next one on a retry.

Failure handling, per request:
- connection refused, or an idle connection found closed (server restarted): reconnect with
  exponential backoff, at most ``reconnect_attempts`` times, within ``timeout``;
- the server's traceback (text frame + close 1011): :class:`~arena_adapters.errors.ServerError`
  carrying the traceback; that connection is dropped and the next request opens a new one;
- no reply within ``timeout``: :class:`~arena_adapters.errors.TransportTimeout`; the connection is
  aborted (a late reply would break the lockstep);
- keepalive ping timeout while waiting: a :class:`~arena_adapters.errors.TransportError`. By default
  the pong timeout is at least ``timeout``, so a long first inference on a server that blocks its
  event loop (the upstream one does) does not drop the connection.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from arena_adapters.errors import ConfigError, ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters.parts import Health
from arena_adapters_openpi.codec import DecodeLimits, decode, encode
from arena_adapters_openpi.connection import Connection, ConnectionFailed, ConnectionSettings, remaining
from arena_adapters_openpi.endpoints import DEFAULT_ENDPOINT, Endpoint, parse_endpoints
from arena_adapters_openpi.health import check_health

_WAIT_GRACE_S = 0.5


class _Slot:
    """A pool seat bound to one endpoint, holding at most one open connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.connection: Connection | None = None
        self.busy = False

    def discard(self, *, abort: bool = False) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort() if abort else connection.close()


class _EndpointPool:
    """The idle slots of one endpoint (a slot is used by one request at a time)."""

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        self.endpoint = endpoint
        self.slots = [_Slot(endpoint) for _ in range(size)]
        self.idle: queue.LifoQueue[_Slot] = queue.LifoQueue()
        for slot in reversed(self.slots):
            self.idle.put(slot)

    def acquire(self, deadline: float) -> _Slot:
        try:
            slot = self.idle.get(timeout=remaining(deadline))
        except queue.Empty:
            raise TransportTimeout(f"openpi server {self.endpoint}: no free connection within the timeout") from None
        slot.busy = True
        return slot

    def release(self, slot: _Slot) -> None:
        slot.busy = False
        self.idle.put(slot)


class WebsocketTransport:
    """:class:`~arena_adapters.parts.InferenceTransport` for openpi policy servers.

    ``infer`` takes one observation dict (returns one reply dict) or a list of per-env observation
    dicts (returns the list of replies, in the same order, fetched concurrently).

    Args:
        endpoint: ``ws://HOST:PORT``, or several comma-separated (replicas of one policy).
        timeout: seconds for one request, reconnects included.
        connect_timeout: seconds for TCP connect + handshake + metadata frame.
        api_key: sent as ``Authorization: Api-Key <key>`` (the stock server ignores it).
        max_concurrency: requests in flight at once (the connection pool size).
        reconnect_attempts: reconnects per request after a refused or stale connection.
        reconnect_backoff: seconds before the first reconnect, doubled each time.
        keepalive_interval: seconds between keepalive pings; 0 disables pings.
        keepalive_timeout: seconds to wait for a pong; default ``max(20, timeout)``.
        max_message_bytes: the largest reply or metadata frame accepted.
        max_array_bytes: the largest array in a reply accepted.
    """

    def __init__(
        self,
        endpoint: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        api_key: str | None = None,
        max_concurrency: int = 16,
        reconnect_attempts: int = 2,
        reconnect_backoff: float = 0.05,
        keepalive_interval: float = 20.0,
        keepalive_timeout: float | None = None,
        max_message_bytes: int = 64 * 2**20,
        max_array_bytes: int = 64 * 2**20,
    ) -> None:
        self.endpoints = parse_endpoints(endpoint if isinstance(endpoint, str) else tuple(endpoint))
        _check_positive("timeout", timeout)
        _check_positive("connect_timeout", connect_timeout)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(f"option 'max_concurrency': expected an int >= 1, got {max_concurrency!r}")
        if reconnect_attempts < 0 or reconnect_backoff < 0:
            raise ConfigError("options 'reconnect_attempts' and 'reconnect_backoff' must be >= 0")
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        self.reconnect_attempts = int(reconnect_attempts)
        self.reconnect_backoff = float(reconnect_backoff)
        self.limits = DecodeLimits(max_message_bytes, max_array_bytes)
        self.settings = ConnectionSettings(
            api_key=api_key or None,
            connect_timeout=float(connect_timeout),
            keepalive_interval=float(keepalive_interval) if keepalive_interval else None,
            keepalive_timeout=float(keepalive_timeout) if keepalive_timeout else max(20.0, self.timeout),
            limits=self.limits,
        )
        per_endpoint = -(-max_concurrency // len(self.endpoints))
        self._pools = [_EndpointPool(e, per_endpoint) for e in self.endpoints]
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._metadata: dict[Endpoint, Mapping[str, Any]] = {}
        self._closed = False

    # ------------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        """Open one connection per endpoint and read the metadata frames.

        Succeeds when at least one endpoint answered (the others are retried on use).

        Raises:
            TransportError / TransportTimeout: no endpoint could be reached.
        """
        self._check_open()
        errors: list[TransportError] = []
        for pool in self._pools:
            deadline = time.monotonic() + min(self.timeout, self.settings.connect_timeout)
            slot = pool.acquire(deadline)
            try:
                self._ensure_connected(slot, deadline, attempts=self.reconnect_attempts)
            except TransportError as exc:
                errors.append(exc)
            finally:
                pool.release(slot)
        if len(errors) == len(self._pools):
            raise errors[0]

    def close(self) -> None:
        """Close every connection and stop the worker threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        slots = [slot for pool in self._pools for slot in pool.slots if slot.connection is not None]
        if len(slots) > 1:
            threads = [threading.Thread(target=slot.discard, daemon=True) for slot in slots]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(self.settings.close_timeout + 1.0)
        else:
            for slot in slots:
                slot.discard()

    def __enter__(self) -> WebsocketTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("openpi transport is closed")

    # ------------------------------------------------------------------------- queries

    def health(self) -> Health:
        """``GET /healthz`` on every endpoint; ok only if all answer 200."""
        results = [check_health(e, min(self.timeout, self.settings.connect_timeout), self.settings.headers())
                   for e in self.endpoints]
        return Health(
            ok=all(r.ok for r in results),
            detail="; ".join(r.detail for r in results),
            latency_s=max(r.latency_s for r in results),
        )

    def metadata(self) -> Mapping[str, Any]:
        """The metadata frame of the first endpoint that answered (connects if needed)."""
        if not self._metadata:
            self.connect()
        for endpoint in self.endpoints:
            if endpoint in self._metadata:
                return self._metadata[endpoint]
        return {}

    def metadata_by_endpoint(self) -> dict[str, Mapping[str, Any]]:
        """The metadata frame read from each endpoint so far, by URL."""
        return {str(e): m for e, m in self._metadata.items()}

    def reset(self, env_ids: np.ndarray[Any, Any] | None) -> None:
        """openpi servers have no reset: nothing to do."""

    def infer(self, request: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
        """Send one observation (a dict) or several (a list of dicts, one per env) and return the
        reply dict(s) in the same form and order.

        Raises:
            TransportTimeout, TransportError, ServerError, ProtocolError: see the module docstring;
            for a list, the error of the lowest failing index (with its index in the message).
        """
        self._check_open()
        if isinstance(request, Mapping):
            return self._request(0, request, time.monotonic() + self.timeout)
        observations = list(request)
        if not observations:
            return []
        deadline = time.monotonic() + self.timeout
        if len(observations) == 1 or self.max_concurrency == 1:
            return [self._request(i, obs, deadline, count=len(observations)) for i, obs in enumerate(observations)]
        executor = self._workers()
        futures: list[Future[Any]] = [
            executor.submit(self._request, i, obs, deadline, count=len(observations))
            for i, obs in enumerate(observations)
        ]
        _, pending = wait(futures, timeout=remaining(deadline) + _WAIT_GRACE_S)
        if pending:
            for future in pending:
                future.cancel()
            self._abort_busy_slots()
            wait(pending, timeout=self.settings.close_timeout + _WAIT_GRACE_S)
            raise TransportTimeout(
                f"openpi: {len(pending)} of {len(observations)} requests got no reply within {self.timeout:g} s"
            )
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        return [future.result() for future in futures]

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="openpi-ws")
            return self._executor

    def _abort_busy_slots(self) -> None:
        for pool in self._pools:
            for slot in pool.slots:
                connection = slot.connection
                if slot.busy and connection is not None:
                    connection.abort()

    # ------------------------------------------------------------------- one request

    def _request(self, index: int, observation: Mapping[str, Any], deadline: float, count: int = 1) -> Any:
        try:
            payload = encode(observation)
        except ProtocolError as exc:
            raise ProtocolError(f"{_which(index, count)}{exc}") from exc
        attempt = 0
        while True:
            pool = self._pools[(index + attempt) % len(self._pools)]
            slot = pool.acquire(deadline)
            try:
                reply = self._exchange(slot, payload, deadline)
                break
            except ConnectionFailed as exc:
                slot.discard(abort=True)
                if not exc.retryable or attempt >= self.reconnect_attempts:
                    raise _with_prefix(exc, index, count, attempt) from None
                error = exc
            except TransportTimeout as exc:
                slot.discard(abort=True)
                raise _with_prefix(exc, index, count, attempt) from None
            except ProtocolError as exc:
                slot.discard(abort=True)
                raise ProtocolError(f"{_which(index, count)}{exc}") from None
            except ServerError as exc:
                slot.discard(abort=True)
                raise ServerError(f"{_which(index, count)}{exc}", exc.server_message) from None
            finally:
                pool.release(slot)
            attempt += 1
            if not self._pause_before_retry(attempt, deadline):
                raise TransportTimeout(f"{_which(index, count)}gave up reconnecting within the timeout: {error}")
        try:
            return decode(reply, self.limits)
        except ProtocolError as exc:
            raise ProtocolError(f"{_which(index, count)}{exc}") from None

    def _exchange(self, slot: _Slot, payload: bytes, deadline: float) -> bytes:
        self._ensure_connected(slot, deadline, attempts=0)
        assert slot.connection is not None
        return slot.connection.exchange(payload, deadline)

    def _ensure_connected(self, slot: _Slot, deadline: float, attempts: int) -> None:
        attempt = 0
        while slot.connection is None:
            try:
                slot.connection = Connection.open(slot.endpoint, self.settings, deadline)
                self._metadata[slot.endpoint] = slot.connection.metadata
            except ConnectionFailed:
                if attempt >= attempts:
                    raise
                attempt += 1
                if not self._pause_before_retry(attempt, deadline):
                    raise

    def _pause_before_retry(self, attempt: int, deadline: float) -> bool:
        """Sleep the exponential backoff before retry ``attempt`` (1-based); False, without
        sleeping, when the deadline would pass first."""
        pause = self.reconnect_backoff * 2 ** (attempt - 1)
        if pause >= remaining(deadline):
            return False
        time.sleep(pause)
        return True


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"option {name!r}: expected a number > 0, got {value!r}")


def _which(index: int, count: int) -> str:
    return f"env request {index} of {count}: " if count > 1 else ""


def _with_prefix(exc: TransportError, index: int, count: int, attempt: int) -> TransportError:
    suffix = f" (after {attempt} reconnect{'s' if attempt != 1 else ''})" if attempt else ""
    message = f"{_which(index, count)}{exc}{suffix}"
    return TransportTimeout(message) if isinstance(exc, TransportTimeout) else TransportError(message)
