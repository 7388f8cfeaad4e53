"""Faults: the reference server turned hostile (``fault_injector``), small hostile servers written
here, a server killed mid-request and restarted, ``close()`` with a request in flight, auth.

Each fault must give the right typed error within its deadline (elapsed < timeout + slack), and the
next call must work once the server behaves again.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zmq
from arena_adapters_gr00t.codec import encode
from arena_adapters_gr00t.server import ReferenceServer
from arena_adapters_gr00t.transport import Gr00tTransport

import arena_adapters as aa
from arena_adapters.errors import (
    ActionError,
    ProtocolError,
    ServerError,
    TransportError,
    TransportTimeout,
)
from arena_adapters.examples import droid_observation
from arena_adapters.transport import ReplyFault

Start = Callable[..., ReferenceServer]
SLACK_S = 1.5


def aa_droid(num_envs: int) -> dict[str, Any]:
    return droid_observation(num_envs, height=36, width=64)


def flat_observation(batch: int) -> dict[str, Any]:
    return {
        "video.exterior_image_1_left": np.zeros((batch, 1, 18, 32, 3), np.uint8),
        "video.wrist_image_left": np.zeros((batch, 1, 18, 32, 3), np.uint8),
        "state.joint_position": np.zeros((batch, 1, 7), np.float32),
        "state.gripper_position": np.zeros((batch, 1, 1), np.float32),
        "annotation.language.language_instruction": ["pick"] * batch,
    }


class Faults:
    """A fault injector whose next faults the test queues; ``None`` replies normally."""

    def __init__(self) -> None:
        self.queue: list[ReplyFault] = []

    def __call__(self, reply: bytes) -> ReplyFault | None:
        return self.queue.pop(0) if self.queue else None


@pytest.fixture
def faulty(start_server: Start) -> tuple[ReferenceServer, Faults]:
    faults = Faults()
    return start_server(fault_injector=faults), faults




def timed(call: Callable[[], Any], error: type[BaseException]) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(error) as info:
        call()
    return time.monotonic() - started, info.value


@pytest.mark.parametrize(("fault", "error"), [
    (ReplyFault("replace", b"\xc1 not msgpack"), ProtocolError),
    (ReplyFault("replace", encode({"x": {"__ndarray_class__": True, "as_npy": b"\x93NUMPY\x01\x00\xff\xff{"}})),
     ProtocolError),
    (ReplyFault("replace", encode({"error": "model exploded"})), ServerError),
    (ReplyFault("silence"), TransportTimeout),
    (ReplyFault("close"), TransportTimeout),
    (ReplyFault("trickle", b"\x00" * 4, interval_s=0.5), TransportTimeout),  # 2 s for the whole message
])
def test_each_fault_is_typed_in_time_and_the_next_call_recovers(
        fault: ReplyFault, error: type[BaseException], faulty: tuple[ReferenceServer, Faults],
        transports: Callable[..., Gr00tTransport]) -> None:
    server, faults = faulty
    transport = transports(server.endpoint, timeout=0.8)
    faults.queue.append(fault)
    elapsed, raised = timed(lambda: transport.infer(flat_observation(1)), error)
    assert elapsed < 0.8 + SLACK_S
    assert raised.endpoint == server.endpoint and raised.request == "get_action"  # type: ignore[attr-defined]
    transport.timeout = 10.0
    assert transport.infer(flat_observation(2))["action.joint_position"].shape == (2, 32, 7)


def test_a_wrong_shape_is_an_action_error(faulty: tuple[ReferenceServer, Faults]) -> None:
    server, faults = faulty
    short = [{"action.joint_position": np.zeros((2, 5, 7), np.float32),
              "action.gripper_position": np.zeros((2, 5, 1), np.float32)}, {}]
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        policy.connect()
        faults.queue.append(ReplyFault("replace", encode(short)))
        with pytest.raises(ActionError, match=r"action.joint_position.*expected"):
            policy.get_action(aa_droid(2))


def test_nan_actions_name_the_env_ids_and_dims(faulty: tuple[ReferenceServer, Faults]) -> None:
    server, faults = faulty
    joints = np.zeros((3, 32, 7), np.float32)
    joints[1, :, 4] = np.nan
    reply = [{"action.joint_position": joints, "action.gripper_position": np.zeros((3, 32, 1), np.float32)}, {}]
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        policy.connect()
        faults.queue.append(ReplyFault("replace", encode(reply)))
        with pytest.raises(ActionError, match=r"env ids \[1\].*action dims \[4\]"):
            policy.get_action(aa_droid(3))


def hostile_rep(port: int, answer: Callable[[zmq.Socket[Any], bytes], None]) -> threading.Thread:
    """A REP socket on ``port`` that lets ``answer`` deal with one request, then closes."""
    ready = threading.Event()

    def serve() -> None:
        context = zmq.Context()
        sock = context.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(f"tcp://127.0.0.1:{port}")
        ready.set()
        if sock.poll(10_000):
            answer(sock, sock.recv())
        sock.close(linger=0)
        context.term()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    return thread


def test_an_enormous_declared_size_is_refused_before_allocation(free_port: int,
                                                                 transports: Callable[..., Gr00tTransport]) -> None:
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"
    payload = b"\x93NUMPY\x01\x00" + (len(header) + 1).to_bytes(2, "little") + header + b"\n"
    thread = hostile_rep(free_port, lambda sock, _: sock.send(encode(
        [{"action.joint_position": {"__ndarray_class__": True, "as_npy": payload}}, {}])))
    elapsed, raised = timed(lambda: transports(f"tcp://127.0.0.1:{free_port}", timeout=2).infer(flat_observation(1)),
                            ProtocolError)
    assert "max_array_bytes" in str(raised) and elapsed < 2 + SLACK_S
    thread.join(5)


def test_garbage_from_a_hostile_server(free_port: int, transports: Callable[..., Gr00tTransport]) -> None:
    thread = hostile_rep(free_port, lambda sock, _: sock.send(os.urandom(4096)))
    with pytest.raises(ProtocolError, match="undecodable"):
        transports(f"tcp://127.0.0.1:{free_port}", timeout=2).infer(flat_observation(1))
    thread.join(5)


def test_killed_mid_request_then_restarted(free_port: int, start_server: Start,
                                          transports: Callable[..., Gr00tTransport]) -> None:
    # The server takes the request and dies before answering (its socket and context go away, as
    # in a kill); then a new server comes up on the same port.
    thread = hostile_rep(free_port, lambda sock, _: None)
    transport = transports(f"tcp://127.0.0.1:{free_port}", timeout=1.0)
    elapsed, _ = timed(lambda: transport.infer(flat_observation(1)), TransportTimeout)
    assert elapsed < 1.0 + SLACK_S
    thread.join(5)
    start_server(port=free_port)
    transport.timeout = 10.0
    assert transport.infer(flat_observation(1))["action.joint_position"].shape == (1, 32, 7)


BIG_REPLY_SERVER = textwrap.dedent("""
    import sys, zmq
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"tcp://127.0.0.1:{sys.argv[1]}")
    print("ready", flush=True)
    sock.recv()
    sock.send(b"\\x00" * (200 * 2**20))
    sock.poll(30_000)
""")


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_a_200_mb_reply_never_reaches_memory(free_port: int, transports: Callable[..., Gr00tTransport]) -> None:
    # ZeroMQ drops a message over MAXMSGSIZE (max_message_bytes) before reading it and gives no sign
    # of it, so the call ends as a timeout, with the client's memory untouched.
    process = subprocess.Popen([sys.executable, "-c", BIG_REPLY_SERVER, str(free_port)], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        transport = transports(f"tcp://127.0.0.1:{free_port}", timeout=3.0)
        before = rss_bytes()
        elapsed, raised = timed(lambda: transport.ping(), TransportTimeout)
        assert rss_bytes() - before < 50 * 2**20
        assert elapsed < 3.0 + SLACK_S
        assert "max_message_bytes" in str(raised)
    finally:
        process.kill()
        process.wait(10)


def open_fds() -> int:
    gc.collect()  # transports of earlier tests, unreferenced but not yet finalized, would count
    return len(os.listdir("/proc/self/fd"))


def test_close_with_a_request_in_flight(free_port: int) -> None:
    thread = hostile_rep(free_port, lambda sock, _: sock.poll(10_000))  # takes the request, never answers
    fds, threads = open_fds(), threading.active_count()
    transport = Gr00tTransport(f"tcp://127.0.0.1:{free_port}", timeout=30)
    errors: list[BaseException] = []
    ended = threading.Event()

    def call() -> None:
        try:
            transport.ping()
        except BaseException as exc:
            errors.append(exc)
        ended.set()

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    transport.close()
    closed_in = time.monotonic() - started
    assert ended.wait(1.0), "the request in flight did not end at once"
    caller.join(1)
    assert closed_in < 1.0
    assert len(errors) == 1 and type(errors[0]) is TransportError, errors
    with pytest.raises(TransportError, match="closed"):
        transport.ping()  # close is final: nothing reopens
    transport.close()  # idempotent
    assert open_fds() <= fds
    assert threading.active_count() <= threads
    thread.join(12)


def test_no_fds_or_threads_leak_across_many_calls_and_timeouts(start_server: Start, free_port: int) -> None:
    server = start_server()
    fds, threads = open_fds(), threading.active_count()
    for _ in range(3):
        with Gr00tTransport(server.endpoint, timeout=5) as transport:
            transport.ping()
            transport.infer(flat_observation(1))
        with Gr00tTransport(f"tcp://127.0.0.1:{free_port}", timeout=0.2) as dead, \
                pytest.raises(TransportTimeout):
            dead.ping()
    assert open_fds() <= fds and threading.active_count() <= threads


SECRET = "s3cret-T0KEN"


@pytest.mark.parametrize("token", [None, "wrong"])
def test_auth_refused_at_connect_is_a_server_error(token: str | None, start_server: Start,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    server = start_server(api_token=SECRET)
    options = {} if token is None else {"api_token": token}
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, **options) as policy, \
            pytest.raises(ServerError) as info:
        policy.connect()
    assert info.value.server_message == "Unauthorized: Invalid API token"
    assert "api_token" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in caplog.text
    assert (token or "") == "" or token not in str(info.value)


def test_auth_accepted(start_server: Start) -> None:
    server = start_server(api_token=SECRET)
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5, api_token=SECRET) as policy:
        assert policy.get_action(aa_droid(1)).shape == (1, 8)
