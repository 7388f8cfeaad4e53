"""Faults, injected into the reference server (``fault_injector``) or played by small hostile servers
written here: each gives the right typed error within its deadline, and the next call recovers.
Also: close() with requests in flight, auth, secrets, and wss:// endpoints."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from arena_adapters_openpi.builtin_policy import EchoStatePolicy
from arena_adapters_openpi.codec import decode, encode
from arena_adapters_openpi.observations import layout_of, synthetic_request
from arena_adapters_openpi.plugin import TRANSPORT_OPTIONS
from arena_adapters_openpi.server import ReferenceServer
from arena_adapters_openpi.transport import WebsocketTransport
from websockets.sync.server import ServerConnection, serve

from arena_adapters import load_policy
from arena_adapters.errors import ActionError, ProtocolError, TransportError, TransportTimeout
from arena_adapters.examples import droid_observation
from arena_adapters.transport import ReplyFault

ServerFactory = Callable[..., ReferenceServer]
SLACK = 0.75  # seconds a typed error may come after its deadline on a loaded 2-core machine


def request(joint0: float = 0.0) -> dict[str, Any]:
    observation = synthetic_request(layout_of("droid"), "pick up the cup")
    observation["observation/joint_position"] = observation["observation/joint_position"].copy()
    observation["observation/joint_position"][0] = joint0
    return observation




def first_only(fault: ReplyFault) -> Callable[[bytes], ReplyFault | None]:
    """An injector that faults the first reply only."""
    calls = []

    def inject(data: bytes) -> ReplyFault | None:
        calls.append(data)
        return fault if len(calls) == 1 else None

    return inject


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


# ----------------------------------------------------------------- faults of the reference server

def test_a_withheld_reply_is_a_timeout_within_the_deadline_and_the_next_call_recovers(
    server_factory: ServerFactory, transports: Any
) -> None:
    server = server_factory(fault_injector=first_only(ReplyFault("silence")))
    transport = transports(server.endpoint, timeout=0.5)
    error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, TransportTimeout) and elapsed < 0.5 + SLACK
    assert transport.infer(request(3.0))["actions"][0, 0] == 3.0


def test_a_trickled_reply_is_cut_off_at_the_deadline(server_factory: ServerFactory, transports: Any) -> None:
    reply = encode({"actions": np.zeros((10, 8), np.float32)})
    server = server_factory(fault_injector=first_only(ReplyFault("trickle", reply, interval_s=0.05)))
    transport = transports(server.endpoint, timeout=0.6)
    error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, TransportTimeout) and elapsed < 0.6 + SLACK
    assert transport.infer(request(1.0))["actions"][0, 0] == 1.0


def test_a_slow_trickle_that_ends_in_time_is_a_valid_reply(server_factory: ServerFactory, transports: Any) -> None:
    reply = encode({"actions": np.full((2, 8), 7.0, np.float32)})
    server = server_factory(fault_injector=first_only(ReplyFault("trickle", reply, interval_s=0.001)))
    assert transports(server.endpoint).infer(request())["actions"][0, 0] == 7.0


@pytest.mark.parametrize("garbage", [b"\xc1", b"\x92\x01", encode({"actions": "no"})[:-1], os.urandom(64),
                                     b"\x81\xa7actions\xc6\xff\xff\xff\xff" + bytes(8)])
def test_a_garbage_reply_is_a_protocol_error_and_the_connection_goes_on(
    garbage: bytes, server_factory: ServerFactory, transports: Any
) -> None:
    server = server_factory(fault_injector=first_only(ReplyFault("replace", garbage)))
    transport = transports(server.endpoint)
    try:
        transport.infer(request())
    except ProtocolError:
        pass
    else:  # random bytes may happen to be a valid msgpack value: then it is simply a reply
        assert garbage not in (b"\xc1", b"\x92\x01")
    assert transport.infer(request(2.0))["actions"][0, 0] == 2.0


def test_a_dropped_connection_is_not_resent(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(fault_injector=first_only(ReplyFault("close")))
    transport = transports(server.endpoint, retry_attempts=3)
    error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, TransportError) and not isinstance(error, TransportTimeout)
    assert not error.retryable and server.requests == 1, "a request that reached the server was resent"
    assert elapsed < 10.0
    assert transport.infer(request(5.0))["actions"][0, 0] == 5.0


def test_wrong_shape_and_nan_actions_through_the_policy(server_factory: ServerFactory) -> None:
    def policy(obs: dict[str, Any]) -> dict[str, Any]:
        state = obs["observation/joint_position"]
        actions = np.zeros((10, 8), np.float32)
        if state[0] > 0.5:
            actions[:, 3] = np.nan
        if obs["prompt"] == "flat":
            return {"actions": actions[0]}
        return {"actions": actions}

    server = server_factory(policy)
    obs = droid_observation(4)  # joint 0 of env 3 is > 0.5
    with load_policy("openpi", endpoint=server.endpoint, instruction="go") as nan_policy, \
            pytest.raises(ActionError) as raised:
        nan_policy.get_action(obs)
    assert "env ids [3]" in str(raised.value) and "action dims [3]" in str(raised.value)
    with load_policy("openpi", endpoint=server.endpoint, instruction="flat") as flat_policy, \
            pytest.raises(ActionError):
        flat_policy.get_action(obs)


def test_a_server_killed_mid_request_then_restarted(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(infer_in_thread=True, delay=1.0)
    transport = transports(server.endpoint, timeout=5.0)
    killer = threading.Timer(0.3, server.stop)
    killer.start()
    error, elapsed = timed(lambda: transport.infer(request()))
    killer.join()
    assert isinstance(error, TransportError) and not isinstance(error, TransportTimeout), error
    assert not error.retryable and elapsed < 5.0
    restarted = server_factory(port=server.port)
    assert transport.infer(request(6.0))["actions"][0, 0] == 6.0
    assert restarted.requests == 1


def test_a_listener_that_never_answers_is_a_timeout(transports: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        transport = transports(f"ws://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, TransportTimeout) and elapsed < 0.5 + SLACK


# ------------------------------------------------------------------------- hostile servers

@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[ServerConnection], None]], str]]:
    """Serve a handler (plain websockets, no code of ours) on a free port; yields its ws:// URL."""
    servers: list[Any] = []

    def start(handler: Callable[[ServerConnection], None], **options: Any) -> str:
        server = serve(handler, "127.0.0.1", 0, compression=None, max_size=None, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}"

    yield start
    for server in servers:
        server.shutdown()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _frame_header(size: int) -> bytes:
    return bytes([0x82, 127]) + size.to_bytes(8, "big")


def _echo_joint(connections: list[ServerConnection], strays: int = 0) -> Callable[[ServerConnection], None]:
    """A handler answering each request with a chunk of its first joint, then ``strays`` more
    replies nobody asked for; each connection is appended to ``connections``."""

    def handler(websocket: ServerConnection) -> None:
        connections.append(websocket)
        websocket.send(encode({}))
        for message in websocket:
            joint = float(decode(message)["observation/joint_position"][0])
            for value in [joint] + [-1.0] * strays:
                websocket.send(encode({"actions": np.full((10, 8), value)}))

    return handler


def test_an_idle_connection_answers_the_servers_pings_when_next_used(hostile: Any, transports: Any) -> None:
    connections: list[ServerConnection] = []
    transport = transports(hostile(_echo_joint(connections), ping_interval=0.2, ping_timeout=1.0))
    for joint in range(4):
        assert transport.infer(request(float(joint)))["actions"][0, 0] == joint
        time.sleep(0.5)  # the server pings the idle connection; the pong goes out at its next use
    assert len(connections) == 1, "the server's keepalive dropped a connection in use every 0.5 s"


def test_a_connection_the_servers_keepalive_closed_while_idle_is_replaced_without_a_resend(
    hostile: Any, transports: Any
) -> None:
    connections: list[ServerConnection] = []
    # no resends allowed: the pool must find the stale connection before the request goes out on it
    transport = transports(hostile(_echo_joint(connections), ping_interval=0.1, ping_timeout=0.1), retry_attempts=0)
    assert transport.infer(request(1.0))["actions"][0, 0] == 1.0
    time.sleep(0.6)  # no pong while idle: the server closes the connection
    assert transport.infer(request(2.0))["actions"][0, 0] == 2.0
    assert len(connections) == 2


def test_a_message_nobody_asked_for_is_never_taken_for_the_next_reply(hostile: Any, transports: Any) -> None:
    connections: list[ServerConnection] = []
    transport = transports(hostile(_echo_joint(connections, strays=1)), retry_attempts=0)
    assert transport.infer(request(1.0))["actions"][0, 0] == 1.0
    time.sleep(0.1)
    assert transport.infer(request(2.0))["actions"][0, 0] == 2.0
    assert len(connections) == 2, "the connection that carried a stray reply was reused"


def test_a_200_mb_reply_is_refused_from_its_header_with_bounded_memory(hostile: Any, transports: Any) -> None:
    def handler(websocket: ServerConnection) -> None:
        websocket.send(encode({}))
        websocket.recv()
        chunk = bytes(2**20)
        try:
            websocket.socket.sendall(_frame_header(200 * 2**20))
            for _ in range(200):
                websocket.socket.sendall(chunk)
        except OSError:
            pass

    transport = transports(hostile(handler), timeout=10.0)
    transport.connect()
    before = _rss_mb()
    error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, ProtocolError) and "max_message_bytes" in str(error), error
    assert _rss_mb() - before < 60, "the client buffered the oversized reply"
    assert elapsed < 10.0


def test_an_enormous_declared_frame_is_refused_at_once(hostile: Any, transports: Any) -> None:
    def handler(websocket: ServerConnection) -> None:
        websocket.send(encode({}))
        websocket.recv()
        websocket.socket.sendall(_frame_header(2**62))
        with contextlib.suppress(Exception):
            websocket.recv(timeout=5)  # until the client drops the connection

    transport = transports(hostile(handler), timeout=5.0)
    error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, ProtocolError) and elapsed < 2.0, error


def test_issue_9_scalar_reply_is_a_protocol_error_not_2_gib(hostile: Any, transports: Any) -> None:
    import msgpack

    bomb = msgpack.packb({b"__npgeneric__": True, b"data": 2**31, b"dtype": "S"}, use_bin_type=True)
    assert len(bomb) == 37

    def handler(websocket: ServerConnection) -> None:
        websocket.send(encode({}))
        for _ in websocket:
            websocket.send(bomb)

    transport = transports(hostile(handler), timeout=5.0)
    before = _rss_mb()
    error, elapsed = timed(lambda: transport.infer(request()))
    assert isinstance(error, ProtocolError), error
    assert elapsed < 1.0 + SLACK and _rss_mb() - before < 100


def test_issue_9_scalar_request_gets_the_traceback_frame_from_our_server(server: ReferenceServer) -> None:
    import msgpack
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    bomb = msgpack.packb({b"__npgeneric__": True, b"data": 2**31, b"dtype": "|S8"}, use_bin_type=True)
    before = _rss_mb()
    with connect(server.endpoint, compression=None) as websocket:
        websocket.recv()
        websocket.send(bomb)
        text = websocket.recv(timeout=5)
        assert isinstance(text, str) and "ProtocolError" in text and "scalar" in text
        with pytest.raises(ConnectionClosedError) as raised:
            websocket.recv(timeout=5)
    assert raised.value.rcvd is not None and raised.value.rcvd.code == 1011
    assert _rss_mb() - before < 100


def test_the_server_refuses_requests_over_its_cap(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(max_message_bytes=400_000)  # a DROID request is about 301 KB
    transport = transports(server.endpoint)
    big = request()
    big["observation/exterior_image_1_left"] = np.zeros((400, 400, 3), np.uint8)
    error, _ = timed(lambda: transport.infer(big))
    assert isinstance(error, TransportError) and "1009" in str(error), error
    assert server.requests == 0
    assert transport.infer(request(1.0))["actions"][0, 0] == 1.0


def test_a_bad_metadata_frame_is_a_protocol_error(hostile: Any, transports: Any) -> None:
    def handler(websocket: ServerConnection) -> None:
        websocket.send(encode([1, 2, 3]))
        with contextlib.suppress(Exception):
            websocket.recv(timeout=5)

    with pytest.raises(ProtocolError, match="metadata"):
        transports(hostile(handler)).connect()


# ---------------------------------------------------------------------------------- close

def _settled(measure: Callable[[], int], target: int, seconds: float = 3.0) -> int:
    deadline = time.monotonic() + seconds
    value = measure()
    while value > target and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return value


def _client_threads() -> int:
    """Threads, less the in-process reference server's (its inference pool grows on demand)."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith(("openpi-infer", "openpi-server")))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_with_requests_in_flight_is_prompt_and_leaks_nothing(server_factory: ServerFactory) -> None:
    echo = EchoStatePolicy()

    def slow_on_request(obs: dict[str, Any]) -> dict[str, Any]:
        time.sleep(2.0 if obs["prompt"] == "slow" else 0.0)
        return echo.infer(obs)

    server = server_factory(slow_on_request, infer_in_thread=True, workers=4)
    with WebsocketTransport(server.endpoint, timeout=5.0) as warmup:  # the server's 4 threads start
        warmup.infer([request()] * 4)
    time.sleep(0.2)
    slow = request()
    slow["prompt"] = "slow"
    threads, fds = _client_threads(), _fds()
    transport = WebsocketTransport(server.endpoint, timeout=30.0, max_concurrency=4)
    outcome: dict[str, Any] = {}

    def call() -> None:
        outcome["error"], _ = timed(lambda: transport.infer([slow] * 4))
        outcome["ended"] = time.monotonic()

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while server.in_flight < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    # 4 once the kit's DaemonPool starts a thread per queued call; today it sometimes leaves one
    # queued behind a busy thread (reported to the core), which close() must end as well.
    assert server.in_flight >= 2
    connections = server.connections
    started = time.monotonic()
    transport.close()
    closed = time.monotonic()
    caller.join(5)
    assert closed - started < 1.0, f"close() took {closed - started:.2f} s"
    assert isinstance(outcome["error"], TransportError) and not isinstance(outcome["error"], TransportTimeout)
    assert outcome["ended"] - started < 1.0, "the request in flight did not end at once"
    assert _settled(_client_threads, threads) <= threads, f"threads leaked: {threading.enumerate()}"
    assert _settled(_fds, fds) <= fds, "file descriptors leaked"
    assert transport.open_connections == 0
    error, _ = timed(lambda: transport.infer(request()))
    assert isinstance(error, TransportError) and "closed" in str(error)
    assert server.connections == connections, "close() reopened a connection"


def test_close_while_connecting_to_a_silent_listener_is_prompt(transports: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        transport = transports(f"ws://127.0.0.1:{listener.getsockname()[1]}", timeout=30.0, connect_timeout=30.0)
        outcome: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: outcome.update(zip(("error", "elapsed"),
                                                                    timed(transport.connect), strict=True)))
        caller.start()
        time.sleep(0.3)
        started = time.monotonic()
        transport.close()
        caller.join(5)
        assert time.monotonic() - started < 1.0
    assert isinstance(outcome["error"], TransportError) and not isinstance(outcome["error"], TransportTimeout)


# ----------------------------------------------------------------------------- auth, secrets

def test_api_key_accepted_and_refused_and_never_shown(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(api_key="s3cret-key")
    for key in (None, "wrong-key"):
        error, _ = timed(lambda key=key: transports(server.endpoint, api_key=key).infer(request()))
        assert isinstance(error, TransportError) and "401" in str(error) and not error.retryable
        assert key is None or key not in str(error)
    assert server.requests == 0
    good = transports(server.endpoint, api_key="s3cret-key")
    assert good.infer(request(1.0))["actions"][0, 0] == 1.0
    assert good.health().ok
    assert "s3cret-key" not in repr(good.settings) and "s3cret-key" not in repr(vars(good))
    assert {option.name for option in TRANSPORT_OPTIONS if option.is_secret} == {"api_key"}


# ---------------------------------------------------------------------------------- wss://

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)
    return ca_file, context


def test_wss_endpoint_with_a_ca_file(tls_files: tuple[Path, ssl.SSLContext], transports: Any) -> None:
    from websockets.http11 import Request, Response

    ca_file, context = tls_files
    policy = EchoStatePolicy()

    def handler(websocket: ServerConnection) -> None:
        websocket.send(encode({"tls": True}))
        for message in websocket:
            from arena_adapters_openpi.codec import decode

            assert isinstance(message, bytes)
            websocket.send(encode(policy.infer(decode(message))))

    def health(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(200, "OK\n") if request.path == "/healthz" else None

    with serve(handler, "127.0.0.1", 0, ssl=context, process_request=health, compression=None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"wss://127.0.0.1:{server.socket.getsockname()[1]}"
        transport = transports(endpoint, ca_file=str(ca_file))
        assert transport.metadata() == {"tls": True}
        assert transport.infer(request(4.0))["actions"][0, 0] == 4.0
        assert transport.health().ok
        untrusted = transports(endpoint, retry_attempts=0)
        with pytest.raises(TransportError, match="certificate"):
            untrusted.infer(request())
        assert transports(endpoint, verify_tls=False).infer(request(2.0))["actions"][0, 0] == 2.0
        server.shutdown()
