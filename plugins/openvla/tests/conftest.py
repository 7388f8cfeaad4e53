"""Shared fixtures of the openvla plugin tests: golden cases, reference servers, a misbehaving HTTP
server, observations."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from arena_adapters_openvla.server import ReferenceServer, start_reference_server

from arena_adapters.examples import droid_observation
from arena_adapters.testing.golden import GoldenCase, load_cases

ServerFactory = Callable[..., ReferenceServer]


@pytest.fixture(scope="session")
def openvla_cases(golden_dir: Path) -> dict[str, GoldenCase]:
    cases = {case.name: case for case in load_cases(golden_dir, "openvla")}
    assert len(cases) == 12
    return cases


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start reference servers on free loopback ports; all are stopped after the test."""
    started: list[ReferenceServer] = []

    def start(policy: Any = None, **options: Any) -> ReferenceServer:
        server = start_reference_server(policy, host="127.0.0.1", port=0, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def openvla_server() -> Iterator[ReferenceServer]:
    """A module-wide reference server with the OpenVLA dummy policy."""
    server = start_reference_server(port=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oft_server() -> Iterator[ReferenceServer]:
    """A module-wide reference server with the OFT dummy policy (LIBERO chunk 8x7)."""
    server = start_reference_server(port=0, variant="oft")
    yield server
    server.stop()


@dataclass
class CannedServer:
    """A plain HTTP server answering canned replies ``(status, body[, content type])`` by
    ``"METHOD /path"`` (a list of replies is answered in order; status 0 drops the connection
    without answering); it records each request's headers."""

    replies: dict[str, Any]
    endpoint: str = ""
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    """The client address of each request (one per connection when connections are reused)."""


@pytest.fixture
def canned_server() -> Iterator[Callable[..., CannedServer]]:
    """Start misbehaving servers (``{"POST /act": (status, body[, content type])}``) on loopback;
    ``tls=`` an SSL server context serves https."""
    running: list[http.server.ThreadingHTTPServer] = []

    def start(replies: dict[str, Any], tls: ssl.SSLContext | None = None) -> CannedServer:
        canned = CannedServer(replies)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                canned.headers.append(dict(self.headers.items()))
                canned.peers.append(self.client_address)
                reply = canned.replies.get(f"{self.command} {self.path}", (404, b'{"detail":"x"}'))
                if isinstance(reply, list):  # consumed in order, the last one repeats
                    reply = reply.pop(0) if len(reply) > 1 else reply[0]
                status, body, *rest = reply
                if status == 0:  # drop the connection without answering
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", rest[0] if rest else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        running.append(server)
        canned.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
        return canned

    yield start
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_observation() -> Callable[..., dict[str, Any]]:
    """``make_observation(num_envs, height=224, width=224)``: the DROID layout, distinct per env."""
    return lambda num_envs, height=224, width=224: droid_observation(num_envs, height=height, width=width)
