"""The HTTP transport against the reference server (both variants) and against misbehaving servers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from arena_adapters_openvla.probe import synthetic_payload
from arena_adapters_openvla.server import ReferenceServer
from arena_adapters_openvla.transport import HttpTransport

from arena_adapters.errors import ConfigError, ProtocolError, ServerError, TransportError, TransportTimeout
from arena_adapters.transport import DEADLINES, connections

Canned = Callable[..., Any]
ServerFactory = Callable[..., ReferenceServer]
IMAGE = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
GOLDEN_ACTION = [0.49003007452981195, 0.4900281987795118, 0.4900263230292117, 224.0, 224.0, 15.0, 1.0]
ONE = b'{"__numpy__":"AAAAAAAA8D8=","dtype":"<f8","shape":[1]}'


def _payload(instruction: str = "pick up the cup", **extra: Any) -> dict[str, Any]:
    return {"image": IMAGE, "instruction": instruction, **extra}


@pytest.mark.parametrize("encoded", [False, True])
def test_openvla_replies_are_bare_float64_actions_in_env_order(openvla_server: ReferenceServer, encoded: bool) -> None:
    with HttpTransport(openvla_server.endpoint, encoded=encoded) as transport:
        replies = transport.infer([_payload(unnorm_key="bridge_orig"), _payload("x"), _payload("go")])
    assert [reply.dtype.str for reply in replies] == ["<f8"] * 3
    assert replies[0].tolist() == GOLDEN_ACTION
    assert [reply[5] for reply in replies] == [15.0, 1.0, 2.0]
    assert [reply[6] for reply in replies] == [1.0, 0.0, 0.0]


def test_a_single_payload_dict_gives_a_single_reply(openvla_server: ReferenceServer) -> None:
    with HttpTransport(openvla_server.endpoint) as transport:
        reply = transport.infer(_payload(unnorm_key="bridge_orig"))
    assert isinstance(reply, np.ndarray) and reply.tolist() == GOLDEN_ACTION


@pytest.mark.parametrize("encoded", [False, True])
def test_oft_replies_are_lists_of_chunk_rows(oft_server: ReferenceServer, encoded: bool) -> None:
    payload = synthetic_payload("oft", image_size=32, wrist_images=2, state_dim=8)
    with HttpTransport(oft_server.endpoint, encoded=encoded) as transport:
        (reply,) = transport.infer([payload])
    assert isinstance(reply, list) and len(reply) == 8
    rows = np.stack(reply)
    assert rows.shape == (8, 7) and rows.dtype == np.float64
    assert rows[:, 3:6].tolist() == [[32.0 + i, 32.0 + i, 15.0 + i] for i in range(8)]
    assert rows[:, 6].tolist() == pytest.approx([2.0 + i for i in range(8)])  # two wrist keys + sum(state) = 0


@pytest.mark.parametrize("chunk_size, action_dim", [(25, 14), (5, 7)])
def test_oft_chunk_shape_comes_from_the_server(start_server: ServerFactory, chunk_size: int, action_dim: int) -> None:
    server = start_server(variant="oft", chunk_size=chunk_size, action_dim=action_dim)
    with HttpTransport(server.endpoint) as transport:
        (reply,) = transport.infer([synthetic_payload("oft", image_size=16, state_dim=action_dim)])
    assert np.stack(reply).shape == (chunk_size, action_dim)


@pytest.mark.parametrize("encoded", [False, True])
def test_server_error_reply_raises_server_error(openvla_server: ReferenceServer, encoded: bool) -> None:
    with HttpTransport(openvla_server.endpoint, encoded=encoded) as transport, pytest.raises(ServerError) as caught:
        transport.infer([{"instruction": "no image"}])
    assert caught.value.server_message == "error"
    assert "answered \"error\"" in str(caught.value)
    assert caught.value.endpoint == openvla_server.endpoint and not caught.value.retryable


def test_a_body_fastapi_rejects_raises_protocol_error_with_422(openvla_server: ReferenceServer) -> None:
    with HttpTransport(openvla_server.endpoint) as transport, pytest.raises(ProtocolError, match="422") as caught:
        transport.infer(["a JSON string, not an object"])  # type: ignore[list-item]
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "reply, match",
    [
        ((405, b'{"detail":"Method Not Allowed"}'), "405.*OpenVLA deploy.py server"),
        ((500, b"Internal Server Error", "text/plain"), "500.*server failure"),
        ((503, b"", "text/plain"), "503"),
        ((413, b"", "text/plain"), "413.*larger than the server accepts"),
        ((200, b"<html>not json</html>", "text/html"), "undecodable reply|invalid JSON"),
        ((200, b'"some other text"'), "unexpected string reply"),
    ],
)
def test_http_failures_and_undecodable_bodies_raise_protocol_errors_that_are_not_resent(
    canned_server: Canned, reply: tuple[Any, ...], match: str
) -> None:
    server = canned_server({"POST /act": reply})
    with HttpTransport(server.endpoint) as transport, pytest.raises(ProtocolError, match=match) as caught:
        transport.infer([_payload()])
    assert not caught.value.retryable
    assert len(server.headers) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_an_authentication_refusal_is_a_server_error(canned_server: Canned, status: int) -> None:
    server = canned_server({"POST /act": (status, b'{"detail":"Not authenticated"}')})
    with HttpTransport(server.endpoint) as transport, pytest.raises(ServerError, match="api_key") as caught:
        transport.infer([_payload()])
    assert caught.value.server_message == '{"detail":"Not authenticated"}'


def test_encoded_form_needs_a_string_reply(canned_server: Canned) -> None:
    server = canned_server({"POST /act": (200, ONE)})
    with HttpTransport(server.endpoint, encoded=True) as transport, pytest.raises(ProtocolError, match="JSON string"):
        transport.infer([_payload()])


def test_a_connection_dropped_after_the_request_is_never_resent(canned_server: Canned) -> None:
    """The server read the request and may have run it: a TransportError, one request on the server."""
    server = canned_server({"POST /act": [(0, b""), (200, ONE)]})
    with HttpTransport(server.endpoint) as transport:
        with pytest.raises(TransportError, match="closed the connection without replying") as caught:
            transport.infer([_payload()])
        assert not caught.value.retryable and not isinstance(caught.value, TransportTimeout)
        assert len(server.headers) == 1
        assert transport.infer([_payload()])[0].tolist() == [1.0]  # the next call reconnects
    assert len(server.headers) == 2


def test_slow_server_raises_transport_timeout(start_server: ServerFactory) -> None:
    release = threading.Event()

    def slow_policy(payload: dict[str, Any]) -> np.ndarray:
        release.wait(10)
        return np.zeros(7)

    server = start_server(slow_policy)
    try:
        with HttpTransport(server.endpoint, timeout=0.3) as transport, pytest.raises(TransportTimeout, match="0.3 s"):
            transport.infer([_payload()])
    finally:
        release.set()


def test_refused_connection_is_a_retryable_transport_error_not_a_timeout(start_server: ServerFactory) -> None:
    server = start_server()
    endpoint = server.endpoint
    server.stop()
    with HttpTransport(endpoint, timeout=2.0) as transport, pytest.raises(TransportError) as caught:
        transport.infer([_payload()])
    assert not isinstance(caught.value, TransportTimeout)
    assert "cannot connect" in str(caught.value) and "connection refused" in str(caught.value)
    assert caught.value.retryable


class InFlightBarrier:
    """A policy that returns only once ``parties`` calls are running at the same time."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)

    def __call__(self, payload: dict[str, Any]) -> np.ndarray:
        self.barrier.wait()
        return np.full(7, float(len(payload["instruction"])))


def test_max_concurrency_overlaps_requests_to_one_server(start_server: ServerFactory) -> None:
    server = start_server(InFlightBarrier(4))
    with HttpTransport(server.endpoint, max_concurrency=4) as transport:
        replies = transport.infer([_payload("x" * n) for n in range(1, 5)])
    assert [reply[0] for reply in replies] == [1.0, 2.0, 3.0, 4.0]
    assert server.stats.max_in_flight == 4


def test_by_default_the_envs_requests_run_concurrently(start_server: ServerFactory) -> None:
    server = start_server(InFlightBarrier(6))
    with HttpTransport(server.endpoint) as transport:
        assert transport.max_concurrency == 16
        replies = transport.infer([_payload("x" * n) for n in range(1, 7)])
    assert [reply[0] for reply in replies] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert server.stats.requests == 6 and server.stats.max_in_flight == 6


def test_the_envs_requests_are_sent_and_read_back_by_the_calling_thread(start_server: ServerFactory) -> None:
    """HttpConnection sends and receives apart (a SplitConnection): the fan-out starts no thread."""
    from arena_adapters.transport import SplitConnection

    server = start_server(InFlightBarrier(6))
    with HttpTransport(server.endpoint) as transport:
        replies = transport.infer([_payload("x" * n) for n in range(1, 7)])
        assert transport._threads is not None and transport._threads.threads == 0
        assert all(isinstance(seat.connection, SplitConnection) for seat in transport._pool._seats[:6])
    assert [reply[0] for reply in replies] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert server.stats.max_in_flight == 6


def test_a_connection_sends_no_request_before_the_last_reply_was_read(openvla_server: ReferenceServer) -> None:
    from arena_adapters_openvla.http_connection import HttpConnection, HttpRequest

    from arena_adapters.transport import Deadline

    request = HttpRequest("POST", "/act", json.dumps({"image": "x"}).encode())
    connection = HttpConnection.open(HttpTransport(openvla_server.endpoint).endpoint, Deadline.after(5),
                                     {"Content-Type": "application/json"}, 1 << 20)
    with pytest.raises(TransportError, match="no request was sent"):
        connection.receive(Deadline.after(5))
    connection.send(request, Deadline.after(5))
    with pytest.raises(TransportError, match="the reply to the previous request was not read"):
        connection.send(request, Deadline.after(5))
    assert connection.receive(Deadline.after(5)) == b'"error"'  # no array: the server's error reply
    assert connection.exchange(request, Deadline.after(5)) == b'"error"'
    connection.abort()


def test_max_concurrency_one_sends_one_request_at_a_time(start_server: ServerFactory) -> None:
    server = start_server()
    with HttpTransport(server.endpoint, max_concurrency=1) as transport:
        replies = transport.infer([_payload("x" * n) for n in range(1, 7)])
    assert [reply[5] for reply in replies] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert server.stats.requests == 6 and server.stats.max_in_flight == 1


def test_first_failure_of_a_concurrent_fan_out_is_raised(start_server: ServerFactory) -> None:
    server = start_server()
    with HttpTransport(server.endpoint, max_concurrency=3) as transport, pytest.raises(ServerError, match="env request 1"):
        transport.infer([_payload(), {"instruction": "no image"}, _payload()])


def test_health_checks_openapi_lists_post_act(
    openvla_server: ReferenceServer, canned_server: Canned
) -> None:
    with HttpTransport(openvla_server.endpoint) as transport:
        health = transport.health()
        assert health.ok and "POST /act" in health.detail
        assert transport.metadata() == {}
    other = canned_server({"GET /openapi.json": (200, b'{"paths": {"/predict": {"post": {}}}}')})
    with HttpTransport(other.endpoint) as transport:
        health = transport.health()
    assert not health.ok and "/act route" in health.detail


def test_health_of_a_dead_server_is_not_ok_and_does_not_raise(start_server: ServerFactory) -> None:
    server = start_server()
    endpoint = server.endpoint
    server.stop()
    with HttpTransport(endpoint, timeout=1.0) as transport:
        health = transport.health()
    assert not health.ok and "cannot connect" in health.detail


@pytest.mark.parametrize(
    "header, sent", [("Authorization", "Bearer s3cret"), ("X-API-Key", "s3cret")]
)
def test_api_key_is_sent_with_every_request(
    canned_server: Canned, header: str, sent: str
) -> None:
    server = canned_server({"POST /act": (200, ONE)})
    with HttpTransport(server.endpoint, api_key="s3cret", api_key_header=header) as transport:
        assert transport.infer([_payload()])[0].tolist() == [1.0]
        transport.health()
    assert [headers.get(header) for headers in server.headers] == [sent, sent]
    assert server.headers[0]["Content-Type"] == "application/json"


def test_requests_reuse_one_keep_alive_connection(canned_server: Canned) -> None:
    server = canned_server({"POST /act": (200, ONE)})
    with HttpTransport(server.endpoint) as transport:
        for _ in range(3):
            transport.infer([_payload()])
        assert transport.open_connections == 1
    assert len(server.peers) == 3 and len(set(server.peers)) == 1


def test_an_idle_connection_the_server_closed_is_replaced_without_resending(canned_server: Canned) -> None:
    """``Connection: close`` is honoured, and a kept connection found closed is reopened before sending."""
    server = canned_server({"POST /act": (200, ONE)})
    with HttpTransport(server.endpoint) as transport:
        transport.infer([_payload()])
        server.replies["POST /act"] = (0, b"")  # the next request is read, then the connection dropped
        with pytest.raises(TransportError):
            transport.infer([_payload()])
        server.replies["POST /act"] = (200, ONE)
        assert transport.infer([_payload()])[0].tolist() == [1.0]
    assert len(server.headers) == 3 and len(set(server.peers)) == 2


def test_close_is_final_and_idempotent(openvla_server: ReferenceServer) -> None:
    transport = HttpTransport(openvla_server.endpoint)
    assert transport.infer([_payload()])[0].shape == (7,)
    transport.close()
    transport.close()
    assert transport.closed and transport.open_connections == 0
    with pytest.raises(TransportError, match="closed"):
        transport.infer([_payload()])
    with pytest.raises(TransportError, match="closed"):
        transport.infer(_payload())


def test_construction_does_no_io_and_declares_deadlines() -> None:
    transport = HttpTransport("http://127.0.0.1:9", timeout=0.5)
    assert transport.open_connections == 0
    transport.close()
    from arena_adapters_openvla.plugin import register_transports

    records: list[Any] = []
    register_transports(records.append)
    assert DEADLINES in records[0].capabilities


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("127.0.0.1:8777/act", "http://127.0.0.1:8777"),
        ("localhost", "http://localhost:8000"),
        ("https://proxy.example/openvla/", "https://proxy.example:443/openvla"),
        ("http://[::1]:8000/act/", "http://[::1]:8000"),
        ("HTTPS://gpu-1:9000/a/b", "https://gpu-1:9000/a/b"),
    ],
)
def test_endpoints_are_normalized(text: str, expected: str) -> None:
    with HttpTransport(text) as transport:
        assert str(transport.endpoint) == expected


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "expected an address"),
        ("tcp://127.0.0.1:5555", "scheme 'tcp'.*not one of"),
        ("http://", "cannot read host"),
        ("http://host:notaport", "port 'notaport'"),
        ("http//localhost:8000", "malformed address 'http//localhost:8000'"),
        ("http://127.0.0.1:8000, http://127.0.0.1:8001", "is not a number"),
        ("http://host:8000/a b", "plain URL text"),
    ],
)
def test_bad_endpoints_are_config_errors_naming_the_option(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=f"'endpoint'.*{match}"):
        HttpTransport(text)


@pytest.mark.parametrize(
    "options", [{"timeout": 0}, {"timeout": float("nan")}, {"max_concurrency": 0}, {"api_key_header": "X Key"}]
)
def test_bad_transport_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(options))):
        HttpTransport("http://127.0.0.1:8000", api_key="k", **options)


def test_a_header_injection_through_the_api_key_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="api_key") as caught:
        HttpTransport("http://127.0.0.1:8000", api_key="s3cret\r\nX-Evil: 1")
    assert "s3cret" not in str(caught.value)


def test_a_request_sent_in_parts_arrives_whole() -> None:
    """The head and the body go out with sendmsg; a small send buffer makes every call partial."""
    from arena_adapters_openvla.http_connection import _sendmsg_all

    from arena_adapters.transport import Deadline

    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.setblocking(False)  # as a connection's plain TCP socket is
    head, body = b"POST /act HTTP/1.1\r\nContent-Length: 3000000\r\n\r\n", np.random.default_rng(0).bytes(3_000_000)
    received = bytearray()

    def read() -> None:
        while len(received) < len(head) + len(body):
            received.extend(receiver.recv(65536))

    reader = threading.Thread(target=read)
    reader.start()
    with sender, receiver:
        _sendmsg_all(sender, head, memoryview(body), Deadline.after(10))
        reader.join(10)
    assert bytes(received) == head + body


def test_a_send_the_peer_does_not_read_ends_by_the_deadline() -> None:
    from arena_adapters_openvla.http_connection import _sendmsg_all

    from arena_adapters.transport import Deadline

    sender, receiver = socket.socketpair()
    sender.setblocking(False)
    with sender, receiver, pytest.raises(TimeoutError):
        _sendmsg_all(sender, b"head", memoryview(bytes(20_000_000)), Deadline.after(0.3))


def test_an_exchange_checks_the_idle_connection_once_and_waits_only_for_the_reply(
    openvla_server: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each system call lets another thread take the GIL; an exchange on plain TCP makes one idle
    check (the pool's, as it hands the connection out), one send and waits only for the reply."""
    from arena_adapters_openvla import http_connection

    calls = {"idle checks": 0, "waits": 0}
    has_input, wait_until_ready = http_connection._has_input, http_connection._wait_until_ready

    def counted_has_input(sock: socket.socket) -> bool:
        calls["idle checks"] += 1
        return has_input(sock)

    def counted_wait(sock: socket.socket, events: int, deadline: Any) -> None:
        calls["waits"] += 1
        wait_until_ready(sock, events, deadline)

    monkeypatch.setattr(connections, "IDLE_CHECK_S", 60.0)  # however slow this machine is
    monkeypatch.setattr(http_connection, "_has_input", counted_has_input)
    monkeypatch.setattr(http_connection, "_wait_until_ready", counted_wait)
    with HttpTransport(openvla_server.endpoint, max_concurrency=1) as transport:
        transport.infer(_payload())
        calls.update({"idle checks": 0, "waits": 0})
        for _ in range(5):
            assert transport.infer(_payload()).shape == (7,)
        seat = transport._pool._seats[0]
        assert seat.connection is not None and seat.connection._sock.gettimeout() == 0.0
    assert calls["idle checks"] == 5
    assert 5 <= calls["waits"] <= 10  # for the reply (its head and body may come apart), never for a send
