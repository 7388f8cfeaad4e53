"""Fault injection: the reference server turned hostile (``fault_injector``), small hostile servers
written here, killed and restarted servers, and ``close()`` with requests in flight. Each fault must
give its typed error within the call's deadline, and the transport must recover when the server does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from arena_adapters_openvla.server import ReferenceServer, start_reference_server
from arena_adapters_openvla.transport import HttpTransport

import arena_adapters as aa
from arena_adapters.errors import ActionError, ProtocolError, TransportError, TransportTimeout
from arena_adapters.transport import ReplyFault

ServerFactory = Callable[..., ReferenceServer]
Handler = Callable[[socket.socket], None]
IMAGE = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
PAYLOAD = {"image": IMAGE, "instruction": "pick up the cup"}
SLACK = 0.5
"""Seconds a failing call may take past its deadline (thread wake-ups on a loaded 2-core machine)."""


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        call()
    return caught.value, time.monotonic() - started


@pytest.fixture
def hostile_server() -> Iterator[Callable[[Handler], str]]:
    """``start(handler)``: a TCP server on loopback running ``handler(connection)`` for each
    connection (on daemon threads); returns its ``http://`` endpoint."""
    listeners: list[socket.socket] = []

    def start(handler: Handler) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return

                def run(connection: socket.socket = connection) -> None:
                    with connection, contextlib.suppress(OSError):
                        handler(connection)

                threading.Thread(target=run, daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()


def _read_request(connection: socket.socket) -> bytes:
    """The whole request (headers and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += connection.recv(65536)
    return head


# ------------------------------------------------------------------------------ slow and silent


def test_a_reply_trickled_a_byte_every_half_second_times_out_by_the_deadline(start_server: ServerFactory) -> None:
    server = start_server(fault_injector=lambda reply: ReplyFault("trickle", reply, interval_s=0.5))
    with HttpTransport(server.endpoint, timeout=1.0) as transport:
        error, elapsed = _timed(lambda: transport.infer(PAYLOAD))
    assert isinstance(error, TransportTimeout) and "within 1 s" in str(error)
    assert 1.0 <= elapsed < 1.0 + SLACK


def test_a_status_line_trickled_a_byte_at_a_time_times_out_by_the_deadline(
    hostile_server: Callable[[Handler], str],
) -> None:
    def trickle_head(connection: socket.socket) -> None:
        _read_request(connection)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":
            connection.sendall(bytes([byte]))
            time.sleep(0.1)

    with HttpTransport(hostile_server(trickle_head), timeout=0.8) as transport:
        error, elapsed = _timed(lambda: transport.infer(PAYLOAD))
    assert isinstance(error, TransportTimeout)
    assert elapsed < 0.8 + SLACK


def test_a_server_that_never_answers_times_out_by_the_deadline(start_server: ServerFactory) -> None:
    server = start_server(fault_injector=lambda reply: ReplyFault("silence"))
    with HttpTransport(server.endpoint, timeout=0.5) as transport:
        error, elapsed = _timed(lambda: transport.infer([PAYLOAD, PAYLOAD]))
    assert isinstance(error, TransportTimeout)
    assert elapsed < 0.5 + SLACK


def test_a_fan_out_waits_no_longer_than_the_deadline_even_with_one_request_at_a_time(
    start_server: ServerFactory,
) -> None:
    server = start_server(fault_injector=lambda reply: ReplyFault("silence"))
    with HttpTransport(server.endpoint, timeout=0.5, max_concurrency=1) as transport:
        error, elapsed = _timed(lambda: transport.infer([PAYLOAD] * 4))
    assert isinstance(error, TransportTimeout)
    assert elapsed < 0.5 + SLACK


# ------------------------------------------------------------------------ garbage and oversize


def test_garbage_replies_are_protocol_errors(start_server: ServerFactory) -> None:
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))
    server = start_server(fault_injector=lambda reply: ReplyFault("replace", garbage))
    with HttpTransport(server.endpoint, timeout=2.0) as transport, pytest.raises(ProtocolError) as caught:
        transport.infer(PAYLOAD)
    assert caught.value.endpoint == server.endpoint and caught.value.request == "inference"


def test_an_enormous_declared_array_is_refused_before_anything_is_allocated(start_server: ServerFactory) -> None:
    reply = b'{"__numpy__":"AAAAAAAA8D8=","dtype":"<f8","shape":[1000000000000]}'
    server = start_server(fault_injector=lambda _: ReplyFault("replace", reply))
    with HttpTransport(server.endpoint, timeout=2.0) as transport:
        transport.connect()
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="max_array_bytes"):
                transport.infer(PAYLOAD)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 4 * 2**20  # declared: 8 TB


def _big_reply(framing: str, total: int = 200 * 10**6) -> Handler:
    """A 200 MB reply, framed by Content-Length, chunked, or by closing the connection."""

    def handler(connection: socket.socket) -> None:
        _read_request(connection)
        head = {"length": f"Content-Length: {total}\r\n", "chunked": "Transfer-Encoding: chunked\r\n",
                "close": "Connection: close\r\n"}[framing]
        connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}\r\n".encode())
        block = b"[" + b"1," * (2**20 // 2 - 1)
        sent = 0
        while sent < total:
            data = b"%x\r\n%s\r\n" % (len(block), block) if framing == "chunked" else block
            connection.sendall(data)
            sent += len(block)

    return handler


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_200_mb_reply_is_refused_with_memory_bounded(hostile_server: Callable[[Handler], str], framing: str) -> None:
    endpoint = hostile_server(_big_reply(framing))
    with HttpTransport(endpoint, timeout=10.0) as transport:
        before = _rss_mb()
        with pytest.raises(ProtocolError, match="max_message_bytes=16,777,216"):
            transport.infer(PAYLOAD)
        grown = _rss_mb() - before
    assert grown < 60, f"client RSS grew by {grown:.0f} MB"


def test_the_reply_cap_is_an_option(hostile_server: Callable[[Handler], str]) -> None:
    endpoint = hostile_server(_big_reply("length", total=5000))
    with HttpTransport(endpoint, timeout=5.0, max_message_bytes=4096) as transport, pytest.raises(
        ProtocolError, match="Content-Length 5,000 exceeds max_message_bytes=4,096"
    ):
        transport.infer(PAYLOAD)


# ---------------------------------------------------------------------- dropped and restarted


def test_a_dropped_connection_is_a_transport_error_and_is_not_resent(start_server: ServerFactory) -> None:
    server = start_server(fault_injector=lambda reply: ReplyFault("close"))
    with HttpTransport(server.endpoint, timeout=2.0) as transport:
        error, elapsed = _timed(lambda: transport.infer(PAYLOAD))
    assert type(error) is TransportError and not error.retryable
    assert "without replying" in str(error)
    assert server.stats.requests == 1  # the policy ran once: nothing was resent
    assert elapsed < 2.0


def test_a_server_killed_mid_request_then_restarted_is_recovered_on_the_next_call() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def killed_mid_request() -> None:  # reads the request, then dies: the kernel resets the connection
        connection, _ = listener.accept()
        _read_request(connection)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.close()
        listener.close()

    killer = threading.Thread(target=killed_mid_request, daemon=True)
    killer.start()
    with HttpTransport(f"http://127.0.0.1:{port}", timeout=2.0) as transport:
        error, elapsed = _timed(lambda: transport.infer(PAYLOAD))
        assert type(error) is TransportError and not error.retryable
        assert elapsed < 2.0
        killer.join(2.0)  # the dead server's listener is closed before the new one binds the port
        with start_reference_server(port=port) as restarted:
            assert transport.infer(PAYLOAD).shape == (7,)
            assert restarted.stats.requests == 1


def test_a_restarted_server_is_reached_again_on_the_next_call(start_server: ServerFactory) -> None:
    first = start_server()
    with HttpTransport(first.endpoint, timeout=3.0) as transport:
        assert transport.infer(PAYLOAD).shape == (7,)
        first.stop()
        with pytest.raises(TransportError, match="cannot connect") as caught:
            transport.infer(PAYLOAD)
        assert caught.value.retryable
        with start_reference_server(port=first.port) as second:
            started = time.monotonic()
            assert transport.infer(PAYLOAD).shape == (7,)
            assert time.monotonic() - started < 1.0
            assert second.stats.requests == 1


# ------------------------------------------------------------------------------- close in flight


@pytest.mark.parametrize("envs", [1, 3])
def test_close_with_requests_in_flight_returns_at_once_and_leaks_nothing(
    start_server: ServerFactory, envs: int
) -> None:
    server = start_server(fault_injector=lambda reply: ReplyFault("silence"))
    threads_before, fds_before = threading.active_count(), _fds()
    transport = HttpTransport(server.endpoint, timeout=30.0)
    outcome: list[BaseException] = []
    ended = threading.Event()

    def call() -> None:
        try:
            transport.infer([PAYLOAD] * envs if envs > 1 else PAYLOAD)
        except BaseException as exc:
            outcome.append(exc)
        ended.set()

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 10
    while server.stats.requests < envs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats.requests == envs, "the requests did not reach the server"
    started = time.monotonic()
    transport.close()
    assert time.monotonic() - started < 1.0
    assert ended.wait(1.0), "the call in flight did not end when the transport was closed"
    assert isinstance(outcome[0], TransportError) and not isinstance(outcome[0], TransportTimeout)
    assert "closed" in str(outcome[0])
    caller.join(1.0)
    deadline = time.monotonic() + 2
    while (threading.active_count() > threads_before or _fds() > fds_before) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= threads_before
    assert _fds() <= fds_before
    with pytest.raises(TransportError, match="closed"):
        transport.infer(PAYLOAD)


# ------------------------------------------------------------------------ through load_policy


def _policy_for(endpoint: str, **options: Any) -> aa.Policy:
    return aa.load_policy("openvla", endpoint=endpoint, instruction="go", resize="none", **options)


def test_nan_actions_are_an_action_error_naming_the_env_ids_and_dims(
    start_server: ServerFactory, make_observation: Callable[..., dict[str, Any]]
) -> None:
    def nan_for_long_instructions(payload: dict[str, Any]) -> np.ndarray:
        action = np.zeros(7)
        if payload["image"][0, 0, 0] == 100:  # env 2's image (see below)
            action[3] = np.nan
        return action

    observation = make_observation(3, height=8, width=8)
    observation["camera_obs"]["external_camera_rgb"][2, 0, 0, 0] = 100
    observation["camera_obs"]["external_camera_rgb"][:2, 0, 0, 0] = 0
    server = start_server(nan_for_long_instructions)
    with _policy_for(server.endpoint) as policy, pytest.raises(ActionError) as caught:
        policy.get_action(observation)
    assert "[2]" in str(caught.value) and "[3]" in str(caught.value)


def test_a_wrong_shaped_reply_is_an_action_error(
    start_server: ServerFactory, make_observation: Callable[..., dict[str, Any]]
) -> None:
    server = start_server(lambda payload: {"not": "an action"})
    with _policy_for(server.endpoint) as policy, pytest.raises(ActionError, match="expected an action array"):
        policy.get_action(make_observation(2, height=8, width=8))


def test_replicas_share_the_envs_and_keep_their_order(
    start_server: ServerFactory, make_observation: Callable[..., dict[str, Any]]
) -> None:
    first = start_server(lambda payload: np.array([1.0, float(payload["image"][0, 0, 0])]))
    second = start_server(lambda payload: np.array([2.0, float(payload["image"][0, 0, 0])]))
    observation = make_observation(4, height=8, width=8)
    for env in range(4):
        observation["camera_obs"]["external_camera_rgb"][env, 0, 0, 0] = 10 * env
    with _policy_for(f"{first.endpoint}, {second.endpoint}") as policy:
        actions = policy.get_action(observation)
    assert actions[:, 1].tolist() == [0.0, 10.0, 20.0, 30.0]
    assert first.stats.requests >= 1 and second.stats.requests >= 1
    assert first.stats.requests + second.stats.requests == 4
    assert set(actions[:, 0].tolist()) == {1.0, 2.0}
