"""The transport kit's promises, checked on a toy protocol over real TCP sockets.

The toy protocol frames JSON messages with a 4-byte big-endian length. Its client is a
:class:`~arena_adapters.transport.ClientTransport` of about forty lines, as a plugin's would be;
the servers here misbehave on purpose (silent, trickling, garbage, huge declared sizes, refusing).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from arena_adapters.errors import (
    ActionError,
    AdapterError,
    ConfigError,
    ProtocolError,
    ServerError,
    TransportError,
    TransportTimeout,
)
from arena_adapters.options import MASK, Option, masked
from arena_adapters.transport import (
    ClientTransport,
    DaemonPool,
    Deadline,
    DecodeLimits,
    IdleCheck,
    RetryPolicy,
    connections,
    fan_out,
    parse_endpoint,
    split_replicas,
    wait_for,
)

SLACK_S = 0.6

# ------------------------------------------------------------------------------ the toy protocol


class ToyConnection:
    """One TCP connection: a request frame out, a reply frame back, bounded by the deadline in total."""

    def __init__(self, sock: socket.socket, limits: DecodeLimits) -> None:
        self.sock = sock
        self.limits = limits
        self.aborted = False

    def exchange(self, payload: bytes, deadline: Deadline) -> bytes:
        self._send(payload, deadline, retryable=False)
        return self._receive(deadline)

    def _send(self, payload: bytes, deadline: Deadline, *, retryable: bool) -> None:
        try:
            self.sock.settimeout(max(deadline.remaining(), 1e-3))
            self.sock.sendall(payload)
        except TimeoutError:
            raise TransportTimeout(f"toy server: could not send within {deadline.budget:g} s") from None
        except OSError as exc:
            raise TransportError(f"toy connection failed: {exc}", retryable=retryable) from None

    def _receive(self, deadline: Deadline) -> bytes:
        try:
            (size,) = struct.unpack(">I", self._read(4, deadline))
            self.limits.check_message(size, "toy reply")
            return self._read(size, deadline)
        except TimeoutError:
            raise TransportTimeout(f"toy server: no reply within {deadline.budget:g} s") from None
        except OSError as exc:
            raise TransportError(f"toy connection failed: {exc}") from None

    def _read(self, size: int, deadline: Deadline) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(65536, size - len(chunks)))
            if not chunk:
                raise TransportError("toy server closed the connection" if not self.aborted else "aborted")
            chunks += chunk
        return bytes(chunks)

    def abort(self) -> None:
        self.aborted = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class ToyTransport(ClientTransport):
    protocol_title = "toy"
    schemes = ("toy",)
    per_env_requests = True

    def open_connection(self, deadline: Deadline) -> ToyConnection:
        try:
            sock = socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=deadline.remaining())
        except ConnectionRefusedError:
            raise TransportError(f"toy server {self.endpoint}: connection refused", retryable=True) from None
        return ToyConnection(sock, self.limits)

    def encode(self, message: Any) -> bytes:
        body = json.dumps(message).encode()
        return struct.pack(">I", len(body)) + body

    def decode(self, data: bytes) -> Any:
        reply = json.loads(data)
        if isinstance(reply, dict) and "error" in reply:
            raise ServerError(f"toy server failed: {reply['error']}", reply["error"])
        return reply


Behaviour = Callable[[socket.socket, Any], None]


def answer(conn: socket.socket, message: Any) -> None:
    body = json.dumps({"echo": message}).encode()
    conn.sendall(struct.pack(">I", len(body)) + body)


class ToyServer:
    """A threaded TCP server on 127.0.0.1; ``behaviour(conn, message)`` answers each request."""

    def __init__(self, behaviour: Behaviour = answer, port: int = 0) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.stopped = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"toy://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self.stopped.is_set():
                header = conn.recv(4)
                if len(header) < 4:
                    return
                (size,) = struct.unpack(">I", header)
                body = b""
                while len(body) < size:
                    body += conn.recv(size - len(body))
                self.requests += 1
                self.behaviour(conn, json.loads(body))
        except OSError:
            return

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def servers() -> Iterator[list[ToyServer]]:
    started: list[ToyServer] = []
    yield started
    for server in started:
        server.stop()


def serve(servers: list[ToyServer], behaviour: Behaviour = answer) -> ToyServer:
    server = ToyServer(behaviour)
    servers.append(server)
    return server


def silent(conn: socket.socket, message: Any) -> None:
    time.sleep(30)


def trickle(conn: socket.socket, message: Any) -> None:
    body = json.dumps({"echo": message}).encode()
    for byte in struct.pack(">I", len(body)) + body:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def delayed(seconds: float) -> Behaviour:
    def behaviour(conn: socket.socket, message: Any) -> None:
        time.sleep(seconds)
        answer(conn, message)

    return behaviour


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def kit_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("arena-adapters"))


# ------------------------------------------------------------------------------------ deadlines


def test_a_deadline_bounds_a_future() -> None:
    pool = DaemonPool(1, "test")
    started = time.monotonic()
    with pytest.raises(TransportTimeout):
        wait_for(pool.submit(lambda: time.sleep(5)), Deadline.after(0.2), "sleep")
    assert time.monotonic() - started < 0.2 + SLACK_S
    pool.close()


def test_a_silent_server_times_out_within_the_timeout(servers: list[ToyServer]) -> None:
    server = serve(servers, silent)
    with ToyTransport(server.endpoint, timeout=0.5) as transport:
        started = time.monotonic()
        with pytest.raises(TransportTimeout) as caught:
            transport.infer({"x": 1})
        assert time.monotonic() - started < 0.5 + SLACK_S
        assert server.endpoint.replace("toy://", "") in str(caught.value)


def test_a_trickling_server_is_bounded_in_total_not_per_read(servers: list[ToyServer]) -> None:
    server = serve(servers, trickle)  # a byte every 0.2 s: each read succeeds, the whole reply takes seconds
    with ToyTransport(server.endpoint, timeout=1.0) as transport:
        started = time.monotonic()
        with pytest.raises(TransportTimeout):
            transport.infer({"x": 1})
        assert time.monotonic() - started < 1.0 + SLACK_S


def test_replies_and_recovery_after_a_timeout(servers: list[ToyServer]) -> None:
    calls = {"n": 0}

    def first_silent(conn: socket.socket, message: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(1.0)
            return
        answer(conn, message)

    server = serve(servers, first_silent)
    with ToyTransport(server.endpoint, timeout=0.3) as transport:
        with pytest.raises(TransportTimeout):
            transport.infer({"x": 1})
        assert transport.infer({"x": 2}) == {"echo": {"x": 2}}


# ------------------------------------------------------------------------------- typed errors


def test_garbage_and_oversized_replies_are_protocol_errors(servers: list[ToyServer]) -> None:
    def garbage(conn: socket.socket, message: Any) -> None:
        conn.sendall(struct.pack(">I", 5) + b"\xff\x00{[x")

    def huge(conn: socket.socket, message: Any) -> None:
        conn.sendall(struct.pack(">I", 2**31))  # declares 2 GiB, sends nothing more

    for behaviour in (garbage, huge):
        server = serve(servers, behaviour)
        limits = DecodeLimits(max_message_bytes=1 << 20)
        with ToyTransport(server.endpoint, timeout=2.0, limits=limits) as transport:
            started = time.monotonic()
            with pytest.raises(ProtocolError) as caught:
                transport.infer({"x": 1})
            assert time.monotonic() - started < 1.0
            assert caught.value.endpoint == server.endpoint
            assert caught.value.request == "inference"


def test_server_errors_keep_the_servers_message(servers: list[ToyServer]) -> None:
    def failing(conn: socket.socket, message: Any) -> None:
        body = json.dumps({"error": "Traceback: model exploded"}).encode()
        conn.sendall(struct.pack(">I", len(body)) + body)

    server = serve(servers, failing)
    with ToyTransport(server.endpoint) as transport, pytest.raises(ServerError) as caught:
        transport.infer({"x": 1})
    assert caught.value.server_message == "Traceback: model exploded"
    assert not caught.value.retryable


def test_unencodable_requests_are_protocol_errors(servers: list[ToyServer]) -> None:
    server = serve(servers)
    with ToyTransport(server.endpoint) as transport, pytest.raises(ProtocolError, match="cannot encode"):
        transport.infer({"x": object()})


# ------------------------------------------------------------------------------------- retries


def test_refused_connections_are_retried_then_reported(servers: list[ToyServer]) -> None:
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused, and nobody else gets the port
    port = bound.getsockname()[1]
    transport = ToyTransport(f"toy://127.0.0.1:{port}", timeout=2.0, retry=RetryPolicy(attempts=3, backoff=0.01))
    attempts = {"n": 0}
    original = transport.open_connection

    def counting(deadline: Deadline) -> ToyConnection:
        attempts["n"] += 1
        return original(deadline)

    transport._pool._open = counting  # type: ignore[method-assign]
    with pytest.raises(TransportError, match="refused"):
        transport.infer({"x": 1})
    assert attempts["n"] == 4
    transport.close()
    bound.close()


def test_a_request_that_may_have_executed_is_never_resent(servers: list[ToyServer]) -> None:
    def drop(conn: socket.socket, message: Any) -> None:
        conn.shutdown(socket.SHUT_RDWR)  # the request arrived, then the connection broke

    server = serve(servers, drop)
    retry = RetryPolicy(attempts=5, backoff=0.01)
    with ToyTransport(server.endpoint, timeout=2.0, retry=retry) as transport, pytest.raises(TransportError):
        transport.infer({"x": 1})
    assert server.requests == 1


def test_retry_policy_backs_off_with_jitter_and_respects_the_deadline() -> None:
    policy = RetryPolicy(attempts=10, backoff=0.2, jitter=0.5)
    assert all(0.1 <= policy.pause(1) <= 0.2 for _ in range(50))
    assert policy.pause(3) <= 0.8

    def refuse(attempt: int) -> None:
        raise TransportError("refused", retryable=True)

    started = time.monotonic()
    with pytest.raises(TransportTimeout, match="gave up"):
        policy.run(refuse, Deadline.after(0.5), "call")
    assert time.monotonic() - started < 0.5 + SLACK_S


# ------------------------------------------------------------------------------------- fan-out


def test_per_env_requests_fan_out_concurrently_in_order(servers: list[ToyServer]) -> None:
    server = serve(servers, delayed(0.3))
    with ToyTransport(server.endpoint, timeout=5.0, max_concurrency=8) as transport:
        started = time.monotonic()
        replies = transport.infer([{"env": i} for i in range(8)])
        elapsed = time.monotonic() - started
    assert replies == [{"echo": {"env": i}} for i in range(8)]
    assert elapsed < 8 * 0.3 / 2, f"8 requests of 0.3 s took {elapsed:.2f} s: not concurrent"


@pytest.mark.parametrize("transport_class", ["ToyTransport", "ToySplitTransport"])
def test_a_fan_out_timeout_aborts_the_requests_in_flight(servers: list[ToyServer], transport_class: str) -> None:
    """On threads (ToyTransport), or from the calling thread (ToySplitTransport's split connections)."""
    server = serve(servers, silent)
    with globals()[transport_class](server.endpoint, timeout=0.4, max_concurrency=4) as transport:
        started = time.monotonic()
        with pytest.raises(TransportTimeout):
            transport.infer([{"env": i} for i in range(4)])
        assert time.monotonic() - started < 0.4 + SLACK_S
        time.sleep(0.2)
        assert transport.open_connections == 0


def test_fan_out_reports_the_lowest_failing_index() -> None:
    pool = DaemonPool(4, "test")

    def fails(index: int) -> Callable[[], int]:
        def call() -> int:
            if index in (1, 3):
                raise ProtocolError(f"bad reply {index}")
            return index

        return call

    with pytest.raises(ProtocolError, match="env request 1 of 4: bad reply 1"):
        fan_out(pool, [fails(i) for i in range(4)], Deadline.after(2.0), "test")
    pool.close()


# ---------------------------------------------------------------------- fan-out without threads


class ToySplitConnection(ToyConnection):
    """The toy connection, also able to send and receive apart (a SplitConnection)."""

    fail_next_send = False  # a send that fails before anything goes out (retryable)

    def send(self, payload: bytes, deadline: Deadline) -> None:
        if ToySplitConnection.fail_next_send:
            ToySplitConnection.fail_next_send = False
            raise TransportError("toy connection found closed before sending", retryable=True)
        self._send(payload, deadline, retryable=True)

    def receive(self, deadline: Deadline) -> bytes:
        return self._receive(deadline)


class ToySplitTransport(ToyTransport):
    def open_connection(self, deadline: Deadline) -> ToySplitConnection:
        plain = super().open_connection(deadline)
        return ToySplitConnection(plain.sock, self.limits)


def concurrency_counting(seconds: float) -> tuple[Behaviour, dict[str, int]]:
    """A server behaviour that answers after ``seconds`` and counts the requests it holds at once."""
    lock = threading.Lock()
    counts = {"now": 0, "most": 0}

    def behaviour(conn: socket.socket, message: Any) -> None:
        with lock:
            counts["now"] += 1
            counts["most"] = max(counts["most"], counts["now"])
        time.sleep(seconds)
        with lock:
            counts["now"] -= 1
        answer(conn, message)

    return behaviour, counts


def test_split_connections_fan_out_from_the_calling_thread_in_order(servers: list[ToyServer]) -> None:
    behaviour, counts = concurrency_counting(0.3)
    server = serve(servers, behaviour)
    threads = kit_threads()
    with ToySplitTransport(server.endpoint, timeout=5.0, max_concurrency=8) as transport:
        started = time.monotonic()
        replies = transport.infer([{"env": i} for i in range(8)])
        elapsed = time.monotonic() - started
        assert transport._threads is not None and transport._threads.threads == 0
        assert kit_threads() == threads
    assert replies == [{"echo": {"env": i}} for i in range(8)]
    assert counts["most"] == 8, "the requests were not all in flight at once"
    assert elapsed < 8 * 0.3 / 2, f"8 requests of 0.3 s took {elapsed:.2f} s: not concurrent"


def test_a_threadless_fan_out_keeps_at_most_max_concurrency_in_flight(servers: list[ToyServer]) -> None:
    behaviour, counts = concurrency_counting(0.1)
    server = serve(servers, behaviour)
    with ToySplitTransport(server.endpoint, timeout=5.0, max_concurrency=3) as transport:
        replies = transport.infer([{"env": i} for i in range(10)])
        assert transport.open_connections == 3
    assert replies == [{"echo": {"env": i}} for i in range(10)]
    assert counts["most"] == 3 and server.requests == 10


def test_a_threadless_fan_out_names_the_failed_request_and_drops_the_others(servers: list[ToyServer]) -> None:
    def second_fails_fourth_is_slow(conn: socket.socket, message: Any) -> None:
        if message["env"] == 3:
            time.sleep(2.0)
        body = json.dumps({"error": "env 2 exploded"} if message["env"] == 2 else {"echo": message}).encode()
        conn.sendall(struct.pack(">I", len(body)) + body)

    server = serve(servers, second_fails_fourth_is_slow)
    with ToySplitTransport(server.endpoint, timeout=5.0, max_concurrency=4) as transport:
        started = time.monotonic()
        with pytest.raises(ServerError, match="env request 2 of 4: toy server failed: env 2 exploded") as caught:
            transport.infer([{"env": i} for i in range(4)])
        assert time.monotonic() - started < 1.5, "waited for a request that was no longer needed"
        assert caught.value.endpoint == server.endpoint and caught.value.request == "inference"
        assert transport.open_connections == 3  # the slow request's connection was dropped
        assert transport.infer([{"env": 0}, {"env": 1}]) == [{"echo": {"env": 0}}, {"echo": {"env": 1}}]


def test_a_threadless_fan_out_resends_only_what_cannot_have_arrived(servers: list[ToyServer]) -> None:
    server = serve(servers)
    retry = RetryPolicy(attempts=2, backoff=0.01)
    with ToySplitTransport(server.endpoint, timeout=2.0, retry=retry, max_concurrency=4) as transport:
        transport.connect()
        ToySplitConnection.fail_next_send = True
        assert transport.infer([{"env": 0}, {"env": 1}]) == [{"echo": {"env": 0}}, {"echo": {"env": 1}}]
        assert server.requests == 2

    arrived: list[int] = []

    def drop(conn: socket.socket, message: Any) -> None:
        arrived.append(message["env"])
        conn.shutdown(socket.SHUT_RDWR)  # the request arrived, then the connection broke

    dropping = serve(servers, drop)
    retry = RetryPolicy(attempts=5, backoff=0.01)
    with ToySplitTransport(dropping.endpoint, timeout=2.0, retry=retry, max_concurrency=4) as transport, \
            pytest.raises(TransportError, match="env request 0 of 2"):
        transport.infer([{"env": 0}, {"env": 1}])
    time.sleep(0.2)
    assert arrived.count(0) == 1 and arrived.count(1) <= 1  # env 1's request may be dropped before it is read


def test_send_each_needs_split_connections(servers: list[ToyServer]) -> None:
    server = serve(servers)
    with ToyTransport(server.endpoint, timeout=2.0, max_concurrency=4) as transport, \
            pytest.raises(TransportError, match="cannot send and receive apart"):
        transport.send_each([{"env": 0}])
    with ToySplitTransport(server.endpoint, timeout=2.0, max_concurrency=4) as first, \
            ToySplitTransport(server.endpoint, timeout=2.0, max_concurrency=4) as second:
        pending = [first.send_each([{"env": 0}, {"env": 1}]), second.send_each([{"env": 2}])]
        assert [p.collect() for p in pending] == [[{"echo": {"env": 0}}, {"echo": {"env": 1}}],
                                                  [{"echo": {"env": 2}}]]


# --------------------------------------------------------------------------------------- close


@pytest.mark.parametrize("transport_class", [ToyTransport, ToySplitTransport], ids=["threads", "threadless"])
def test_close_aborts_a_request_in_flight_promptly_and_is_final(
    servers: list[ToyServer], transport_class: type[ToyTransport]
) -> None:
    server = serve(servers, silent)
    threads, fds = kit_threads(), open_fds()
    transport = transport_class(server.endpoint, timeout=30.0, max_concurrency=4)
    outcome: dict[str, Any] = {}

    def in_flight() -> None:
        started = time.monotonic()
        try:
            transport.infer([{"env": i} for i in range(4)])
        except AdapterError as error:
            outcome["error"] = error
        outcome["elapsed"] = time.monotonic() - started

    caller = threading.Thread(target=in_flight)
    caller.start()
    time.sleep(0.3)
    fans_out_on_threads = transport_class is ToyTransport
    assert (kit_threads() > threads) == fans_out_on_threads and open_fds() > fds
    closing = time.monotonic()
    transport.close()
    assert time.monotonic() - closing < 0.5
    caller.join(2.0)
    assert not caller.is_alive()
    assert isinstance(outcome["error"], TransportError) and not isinstance(outcome["error"], TransportTimeout)
    assert outcome["elapsed"] < 2.0
    assert transport.open_connections == 0
    transport.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        transport.infer({"x": 1})
    deadline = time.monotonic() + 2.0
    while (kit_threads() > threads or open_fds() > fds + 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kit_threads() == threads
    assert open_fds() <= fds + 4  # the silent server keeps its own 4 accepted sockets


def test_kit_threads_are_daemons() -> None:
    pool = DaemonPool(2, "test")
    future = pool.submit(lambda: threading.current_thread().daemon)
    assert wait_for(future, Deadline.after(2.0), "check") is True
    pool.close()


# ---------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://10.0.0.5:5555", ("tcp", "10.0.0.5", 5555, "")),
        ("gpu-host:5555", ("tcp", "gpu-host", 5555, "")),
        ("tcp://[::1]:6000", ("tcp", "::1", 6000, "")),
    ],
)
def test_endpoints_parse(text: str, expected: tuple[Any, ...]) -> None:
    endpoint = parse_endpoint(text, schemes=("tcp",))
    assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.path) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tcp://gpu-host", "no port"),
        ("ws://gpu-host:5555", "scheme 'ws'"),
        ("tcp://gpu-host:99999", "outside 1-65535"),
        ("tcp://gpu-host:abc", "not a number"),
        ("http//localhost:8000", "malformed"),
        ("", "expected an address"),
    ],
)
def test_bad_endpoints_are_clear_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_endpoint(text, schemes=("tcp",))


def test_http_endpoints_keep_their_path_and_know_loopback_and_tls() -> None:
    endpoint = parse_endpoint("https://example.org:8443/v1/", schemes=("http", "https"), allow_path=True)
    assert endpoint.url == "https://example.org:8443/v1" and endpoint.is_secure and not endpoint.is_loopback
    assert parse_endpoint("http://localhost:80", schemes=("http",)).is_loopback
    assert split_replicas("tcp://a:1, tcp://b:2,") == ["tcp://a:1", "tcp://b:2"]
    with pytest.raises(ConfigError):
        split_replicas(" , ")


def test_a_non_loopback_endpoint_without_credentials_warns(caplog: pytest.LogCaptureFixture) -> None:
    transport = ToyTransport("toy://192.0.2.1:9", timeout=0.2, retry=RetryPolicy(attempts=0))
    with caplog.at_level("WARNING"), pytest.raises(TransportError):
        transport.connect()
    transport.close()
    assert "no credentials" in caplog.text
    caplog.clear()
    transport = ToyTransport("toy://192.0.2.1:9", timeout=0.2, credentials=True, retry=RetryPolicy(attempts=0))
    with caplog.at_level("WARNING"), pytest.raises(TransportError):
        transport.connect()
    transport.close()
    assert "no credentials" not in caplog.text


# ------------------------------------------------------------------------------------- limits


def test_decode_limits_refuse_before_allocating() -> None:
    limits = DecodeLimits(max_array_bytes=1 << 20)
    with pytest.raises(ProtocolError, match="max_array_bytes"):
        limits.check_array("<f8", [2**40, 2**40])  # 2^83 bytes: a Python int, no overflow to a small size
    with pytest.raises(ProtocolError, match="came"):
        limits.check_array("<f4", [2, 2], data_length=15)
    dtype, shape = limits.check_array("<f4", [2, 2], data_length=16)
    assert dtype == np.float32 and shape == (2, 2)
    for bad in ("O", "|V8", "S0", "[('a', '<f4')]", ",f8", 7, "<f8" * 20):
        with pytest.raises(ProtocolError):
            limits.dtype(bad)
    with pytest.raises(ProtocolError):
        limits.shape([2, -1])
    with pytest.raises(ProtocolError):
        limits.shape([1] * 40)
    with pytest.raises(ProtocolError, match="max_depth"):
        limits.check_depth(65)
    with pytest.raises(ProtocolError, match="max_header_bytes"):
        limits.check_header(2_000_000)
    with pytest.raises(ProtocolError, match="max_int_digits"):
        limits.check_int_digits(4301)


def test_decode_limits_come_from_options() -> None:
    limits = DecodeLimits.from_options({"max_message_bytes": 10, "endpoint": "x", "max_depth": None})
    assert limits.max_message_bytes == 10 and limits.max_depth == DecodeLimits.max_depth


# ------------------------------------------------------------------------------------- secrets


def test_secret_options_are_masked_in_errors_and_reports() -> None:
    token = Option("api_token", str, None)
    assert token.is_secret and Option("session_key", str, None, secret=True).is_secret
    assert not Option("endpoint", str, None).is_secret
    with pytest.raises(ConfigError) as caught:
        Option("api_key", int, 0).convert("S3CRET")
    assert "S3CRET" not in str(caught.value) and MASK in str(caught.value)
    shown = masked({"api_token": "S3CRET", "endpoint": "tcp://h:1", "nested": {"password": "p"}})
    assert shown == {"api_token": MASK, "endpoint": "tcp://h:1", "nested": {"password": MASK}}


def test_errors_name_their_context() -> None:
    error = TransportTimeout("no reply").add_context(adapter="gr00t", endpoint="tcp://h:1", request="inference")
    assert str(error) == "no reply [adapter 'gr00t', endpoint tcp://h:1, inference]"
    assert isinstance(ActionError("x"), ValueError) and not ActionError("x").retryable


def test_the_pool_starts_a_thread_for_every_concurrent_call() -> None:
    for _ in range(50):  # the race this guards against showed in about 4 of 10 tries
        pool = DaemonPool(8, "test")
        barrier = threading.Barrier(8, timeout=2.0)
        futures = [pool.submit(barrier.wait) for _ in range(8)]  # all 8 must run at once to pass the barrier
        for future in futures:
            wait_for(future, Deadline.after(3.0), "barrier")
        pool.close()


def test_a_failed_fan_out_aborts_and_waits_for_its_siblings() -> None:
    pool = DaemonPool(3, "test")
    aborted = threading.Event()
    started: list[int] = []
    finished: list[int] = []

    def slow() -> int:
        started.append(1)
        aborted.wait(5)
        finished.append(1)
        return 1

    def failing() -> int:
        raise ProtocolError("bad reply")

    with pytest.raises(ProtocolError, match="env request 1 of 3"):
        fan_out(pool, [slow, failing, slow], Deadline.after(3.0), "test", on_timeout=aborted.set)
    assert aborted.is_set() and finished == started  # no sibling was still running when the error came out
    pool.close()


def test_stale_pooled_connections_are_replaced_without_a_retry(servers: list[ToyServer]) -> None:
    server = serve(servers)
    with ToyTransport(server.endpoint, timeout=2.0, retry=RetryPolicy(attempts=0)) as transport:
        assert transport.infer({"x": 1}) == {"echo": {"x": 1}}
        seat = transport._pool._seats[0]
        assert seat.connection is not None
        seat.connection.closed = True  # type: ignore[attr-defined]
        assert transport.infer({"x": 2}) == {"echo": {"x": 2}}


def test_an_idle_check_serves_the_send_that_follows_it_only_for_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    check = IdleCheck()
    assert not check.recent, "a connection never checked must be checked at its send"
    check.passed()
    assert check.recent
    monkeypatch.setattr(connections, "IDLE_CHECK_S", 0.05)
    time.sleep(0.06)
    assert not check.recent, "an old check must not stand in for the send's own"


def test_per_scheme_default_ports_and_tree_depth() -> None:
    ports = {"ws": 8000, "wss": 443}
    assert parse_endpoint("wss://h", schemes=("ws", "wss"), default_port=ports).port == 443
    assert parse_endpoint("h", schemes=("ws", "wss"), default_port=ports).port == 8000
    nested: Any = 1
    for _ in range(100):
        nested = [nested]
    with pytest.raises(ProtocolError, match="max_depth"):
        DecodeLimits(max_depth=64).check_tree_depth(nested)
    DecodeLimits(max_depth=101).check_tree_depth(nested)
