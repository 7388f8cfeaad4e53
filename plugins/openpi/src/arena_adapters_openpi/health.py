"""The openpi server's health route: ``GET /healthz`` answers ``200 OK``."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping

from arena_adapters.parts import Health
from arena_adapters.transport import Deadline, Endpoint


def health_url(endpoint: Endpoint) -> str:
    """The HTTP URL of the server's ``/healthz`` route."""
    scheme = "https" if endpoint.is_secure else "http"
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{scheme}://{host}:{endpoint.port}/healthz"


def check_health(endpoint: Endpoint, deadline: Deadline, headers: Mapping[str, str] | None = None,
                 tls: ssl.SSLContext | None = None) -> Health:
    """``GET /healthz`` on ``endpoint`` by ``deadline`` (a total bound: a server that trickles its
    answer is cut off); never raises for network faults (they give ``ok=False``)."""
    started = time.perf_counter()
    url = health_url(endpoint)
    connection: http.client.HTTPConnection
    timeout = max(deadline.remaining(), 1e-3)
    if tls is not None:
        connection = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout, context=tls)
    else:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    cutoff: threading.Timer | None = None
    try:
        connection.connect()
        cutoff = threading.Timer(deadline.remaining(), _shut, (connection.sock,))
        cutoff.daemon = True
        cutoff.start()
        connection.request("GET", "/healthz", headers=dict(headers or {}))
        response = connection.getresponse()
        body = response.read(256).decode("utf-8", "replace").strip()
        deadline.check("GET /healthz")
        detail = f"{url}: HTTP {response.status} {body!r}"
        return Health(ok=response.status == 200, detail=detail, latency_s=time.perf_counter() - started)
    except (OSError, http.client.HTTPException) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) or deadline.expired else f"{type(exc).__name__}: {exc}"
        return Health(ok=False, detail=f"{url}: {reason}", latency_s=time.perf_counter() - started)
    finally:
        if cutoff is not None:
            cutoff.cancel()
        connection.close()


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
