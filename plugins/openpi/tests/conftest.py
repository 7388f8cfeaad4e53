"""Shared fixtures of the openpi plugin tests: golden cases, reference servers, observations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from arena_adapters_openpi.server import ReferenceServer, start_server
from arena_adapters_openpi.transport import WebsocketTransport

from arena_adapters.testing.golden import GoldenCase, load_cases, rebuild

ServerFactory = Callable[..., ReferenceServer]


@pytest.fixture(scope="session")
def openpi_cases(golden_dir: Path) -> dict[str, GoldenCase]:
    cases = {case.name: case for case in load_cases(golden_dir, "openpi")}
    assert len(cases) == 15
    return cases


@pytest.fixture(scope="session")
def rebuild_tree() -> Callable[[Any], Any]:
    """Rebuild a golden TREE into its Python value."""
    return rebuild


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    """Start reference servers on free loopback ports; all are stopped after the test."""
    started: list[ReferenceServer] = []

    def make(policy: Any = None, **options: Any) -> ReferenceServer:
        options.setdefault("port", 0)
        server = start_server(policy, "127.0.0.1", **options)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> ReferenceServer:
    """A faithful reference server with the built-in test policy."""
    return server_factory()


def expected_chunk(state: np.ndarray, horizon: int = 10) -> np.ndarray:
    """What the built-in test policy returns for ``state``: ``state + 0.01 * t`` in float32."""
    steps = (0.01 * np.arange(horizon, dtype=np.float32))[:, None]
    return state.astype(np.float32)[None, :] + steps


@pytest.fixture(scope="session")
def builtin_chunk() -> Callable[..., np.ndarray]:
    return expected_chunk


@pytest.fixture
def transports() -> Iterator[Callable[..., WebsocketTransport]]:
    """Transports made by the test, closed after it."""
    made: list[WebsocketTransport] = []

    def make(endpoint: str, **options: Any) -> WebsocketTransport:
        options.setdefault("timeout", 10.0)
        transport = WebsocketTransport(endpoint, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()
