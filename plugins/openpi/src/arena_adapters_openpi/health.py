"""The openpi server's health route: ``GET /healthz`` answers ``200 OK``."""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Mapping

from arena_adapters.parts import Health
from arena_adapters_openpi.endpoints import Endpoint


def check_health(endpoint: Endpoint, timeout: float, headers: Mapping[str, str] | None = None) -> Health:
    """``GET /healthz`` on ``endpoint``; never raises for network faults (they give ``ok=False``)."""
    started = time.perf_counter()
    connection: http.client.HTTPConnection
    if endpoint.secure:
        connection = http.client.HTTPSConnection(
            endpoint.host, endpoint.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        connection.request("GET", "/healthz", headers=dict(headers or {}))
        response = connection.getresponse()
        body = response.read(256).decode("utf-8", "replace").strip()
        latency = time.perf_counter() - started
        ok = response.status == 200
        detail = f"{endpoint.health_url}: HTTP {response.status} {body!r}"
        return Health(ok=ok, detail=detail, latency_s=latency)
    except (OSError, http.client.HTTPException) as exc:
        latency = time.perf_counter() - started
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return Health(ok=False, detail=f"{endpoint.health_url}: {reason}", latency_s=latency)
    finally:
        connection.close()
