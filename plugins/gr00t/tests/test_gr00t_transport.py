"""The ZeroMQ transport against the reference server (and raw sockets) on loopback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.codec import FRAME_BUFFER_BYTES, decode, encode
from arena_adapters_gr00t.modality import ModalityConfig
from arena_adapters_gr00t.server import ReferenceServer
from arena_adapters_gr00t.transport import Gr00tTransport

from arena_adapters.errors import ConfigError, ProtocolError, ServerError, TransportError, TransportTimeout

Start = Callable[..., ReferenceServer]


def nested_observation(batch: int) -> dict[str, Any]:
    return {
        "video": {
            "exterior_image_1_left": np.full((batch, 1, 18, 32, 3), 7, np.uint8),
            "wrist_image_left": np.zeros((batch, 1, 18, 32, 3), np.uint8),
        },
        "state": {
            "joint_position": np.arange(batch * 7, dtype=np.float32).reshape(batch, 1, 7),
            "gripper_position": np.full((batch, 1, 1), 0.5, np.float32),
        },
        "language": {"annotation.language.language_instruction": [["pick"]] * batch},
    }


def flat_observation(batch: int) -> dict[str, Any]:
    nested = nested_observation(batch)
    flat = {f"video.{k}": v for k, v in nested["video"].items()}
    flat.update({f"state.{k}": v for k, v in nested["state"].items()})
    flat["annotation.language.language_instruction"] = ["pick"] * batch
    return flat


@pytest.fixture
def transports() -> Iterator[Callable[..., Gr00tTransport]]:
    made: list[Gr00tTransport] = []

    def make(endpoint: str, **options: Any) -> Gr00tTransport:
        transport = Gr00tTransport(endpoint, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def silent_server(free_port: int) -> Iterator[str]:
    """A REP socket that receives but never answers."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"tcp://127.0.0.1:{free_port}")
    yield f"tcp://127.0.0.1:{free_port}"
    sock.close(linger=0)
    context.term()


def test_factory_does_no_io_and_validates_options(free_port: int) -> None:
    transport = Gr00tTransport(f"127.0.0.1:{free_port}", timeout=0.2)
    assert str(transport.endpoint) == f"tcp://127.0.0.1:{free_port}"
    assert transport.open_connections == 0  # nothing opened before connect()
    transport.close()
    for bad in ({"timeout": 0}, {"protocol_version": "n2"}, {"endpoint": "http://x:1"}, {"endpoint": "host:99999"},
                {"array_encoding": "pickle"}, {"endpoint": "127.0.0.1"}, {"endpoint": "tcp://gpu-1"}):
        with pytest.raises(ConfigError, match="option '(endpoint|timeout|protocol_version|array_encoding)'"):
            Gr00tTransport(**bad)
    with pytest.raises(ConfigError, match="has no port; expected tcp://HOST:PORT"):
        Gr00tTransport("gpu-1")


@pytest.mark.parametrize("fmt", ["nested", "flat"])
@pytest.mark.parametrize("batch", [1, 16])
def test_all_endpoints(fmt: str, batch: int, start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(format=fmt)
    transport = transports(server.endpoint, timeout=5)
    assert transport.ping() == {"status": "ok", "message": "Server is running"}
    configs = transport.get_modality_config()
    assert set(configs) == {"video", "state", "action", "language"}
    assert isinstance(configs["action"], ModalityConfig) and configs["action"].horizon == 32
    observation = flat_observation(batch) if fmt == "flat" else nested_observation(batch)
    prefix = "action." if fmt == "flat" else ""
    action = transport.infer(observation)
    assert list(action) == [f"{prefix}joint_position", f"{prefix}gripper_position"]
    joints = action[f"{prefix}joint_position"]
    assert joints.shape == (batch, 32, 7) and joints.dtype == np.float32
    assert action[f"{prefix}gripper_position"].shape == (batch, 32, 1)
    expected = np.arange(batch * 7, dtype=np.float32).reshape(batch, 1, 7) + (
        np.float32(0.01) * np.arange(32, dtype=np.float32))[None, :, None]
    np.testing.assert_array_equal(joints, expected)
    assert transport.last_info == {}
    assert transport.reset_policy() == {}
    transport.reset(None)
    transport.reset(np.array([0, 1]))  # partial reset: nothing sent
    assert server.policy.policy.resets == 2 if fmt == "flat" else server.policy.resets == 2
    assert transport.call_endpoint("get_action", {"observation": observation, "options": None})[1] == {}
    assert transport.health().ok
    assert transport.kill_server() is None
    server.wait()
    assert not server.running


def test_api_token_accepted_and_refused(start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(api_token="s3cret")
    assert transports(server.endpoint, timeout=5, api_token="s3cret").ping()["status"] == "ok"
    for token in (None, "wrong"):
        with pytest.raises(ServerError) as info:
            transports(server.endpoint, timeout=5, api_token=token).ping()
        assert info.value.server_message == "Unauthorized: Invalid API token"


def test_server_errors_are_mapped(start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(format="nested")
    transport = transports(server.endpoint, timeout=5)
    bad = nested_observation(1)
    bad["state"]["joint_position"] = bad["state"]["joint_position"].astype(np.float64)
    with pytest.raises(ServerError) as info:
        transport.infer(bad)
    assert info.value.server_message == "State key 'joint_position' must be a numpy array of type np.float32. Got float64"
    assert "joint_position" in str(info.value)
    with pytest.raises(ServerError, match="Unknown endpoint: foo"):
        transport.call_endpoint("foo", with_data=False)
    assert transport.ping()["status"] == "ok"  # the socket is still usable after error replies


def test_policy_exceptions_reach_the_client(start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    def broken(observation: Any) -> Any:
        raise RuntimeError("model exploded")

    server = start_server(broken)
    with pytest.raises(ServerError) as info:
        transports(server.endpoint, timeout=5).infer(flat_observation(1))
    assert info.value.server_message == "model exploded"


def raw_server(free_port: int, reply: bytes, received: list[bytes] | None = None) -> threading.Thread:
    """A bare REP socket that answers one request with ``reply`` (the request goes to ``received``)."""
    def serve() -> None:
        context = zmq.Context()
        sock = context.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(f"tcp://127.0.0.1:{free_port}")
        if sock.poll(5000):
            request = sock.recv()
            if received is not None:
                received.append(request)
            sock.send(reply)
        sock.close(linger=0)
        context.term()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_camera_batch_request_reaches_the_server_byte_for_byte(free_port: int,
                                                                 transports: Callable[..., Gr00tTransport]) -> None:
    observation = flat_observation(4)
    rng = np.random.default_rng(0)
    for key in ("video.exterior_image_1_left", "video.wrist_image_left"):
        observation[key] = rng.integers(0, 256, (4, 1, 180, 320, 3), dtype=np.uint8)
    body = protocol.request(protocol.GET_ACTION, protocol.get_action_data(observation, None, protocol.N16),
                            with_data=True, api_token=None)
    expected = encode(body)
    assert len(expected) >= FRAME_BUFFER_BYTES  # sent from one numpy-allocated buffer, without a copy
    received: list[bytes] = []
    thread = raw_server(free_port, encode([{"action.joint_position": np.ones((4, 32, 7), np.float32)}, {}]), received)
    action = transports(f"tcp://127.0.0.1:{free_port}", timeout=5, array_encoding="npy").infer(observation)
    thread.join(5)
    assert received == [expected]
    np.testing.assert_array_equal(action["action.joint_position"], np.ones((4, 32, 7), np.float32))


@pytest.mark.parametrize(("reply", "error"), [
    (b"ERROR", ServerError),
    (b"\xc1", ProtocolError),
    (encode({"not": "a pair"}), ProtocolError),
])
def test_legacy_and_malformed_replies(reply: bytes, error: type, free_port: int,
                                      transports: Callable[..., Gr00tTransport]) -> None:
    thread = raw_server(free_port, reply)
    with pytest.raises(error):
        transports(f"tcp://127.0.0.1:{free_port}", timeout=5).infer(flat_observation(1))
    thread.join()


def test_dead_server_times_out_within_timeout(free_port: int, transports: Callable[..., Gr00tTransport]) -> None:
    transport = transports(f"tcp://127.0.0.1:{free_port}", timeout=0.5)
    for _ in range(2):  # the socket is re-created after a timeout, so the second call times out too
        started = time.monotonic()
        with pytest.raises(TransportTimeout, match="did not answer"):
            transport.ping()
        assert time.monotonic() - started < 0.5 + 1.0
    assert not transport.health().ok


def test_silent_server_times_out(silent_server: str, transports: Callable[..., Gr00tTransport]) -> None:
    transport = transports(silent_server, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransportTimeout):
        transport.infer(flat_observation(1))
    assert time.monotonic() - started < 1.5


def test_server_restart_is_recovered(start_server: Start, free_port: int,
                                     transports: Callable[..., Gr00tTransport]) -> None:
    first = start_server(port=free_port)
    transport = transports(first.endpoint, timeout=0.5)
    assert transport.ping()["status"] == "ok"
    first.stop()
    with pytest.raises(TransportTimeout):
        transport.ping()  # the server is down: a timeout, not a hang
    start_server(port=free_port)
    transport.timeout = 5.0
    assert transport.ping()["status"] == "ok"
    assert transport.infer(flat_observation(2))["action.joint_position"].shape == (2, 32, 7)


def test_restart_between_requests_needs_no_timeout(start_server: Start, free_port: int,
                                                   transports: Callable[..., Gr00tTransport]) -> None:
    first = start_server(port=free_port)
    transport = transports(first.endpoint, timeout=5)
    assert transport.ping()["status"] == "ok"
    first.stop()
    start_server(port=free_port)
    assert transport.ping()["status"] == "ok"  # ZeroMQ reconnected by itself


def test_client_started_before_server(start_server: Start, free_port: int,
                                      transports: Callable[..., Gr00tTransport]) -> None:
    transport = transports(f"tcp://127.0.0.1:{free_port}", timeout=5)
    transport.connect()
    timer = threading.Timer(0.3, lambda: start_server(port=free_port))
    timer.start()
    assert transport.ping()["status"] == "ok"
    timer.join()


def test_close_ends_a_request_in_flight(silent_server: str) -> None:
    transport = Gr00tTransport(silent_server, timeout=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            transport.ping()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    transport.close()
    thread.join(3)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3
    assert len(errors) == 1 and isinstance(errors[0], TransportError)
    with pytest.raises(TransportError, match="closed"):
        transport.ping()


EXIT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from arena_adapters.errors import TransportTimeout
    from arena_adapters_gr00t.transport import Gr00tTransport
    endpoint, mode = sys.argv[1], sys.argv[2]
    if mode == "timeout":
        transport = Gr00tTransport(endpoint, timeout=0.3)
        try:
            transport.ping()
        except TransportTimeout:
            print("timed out", flush=True)
    else:
        transport = Gr00tTransport(endpoint, timeout=60)
        threading.Thread(target=transport.ping, daemon=True).start()
        time.sleep(0.3)
        print("leaving with a request in flight", flush=True)
""")


@pytest.mark.parametrize("mode", ["timeout", "in_flight"])
def test_process_exits_promptly_with_a_request_pending(mode: str, free_port: int) -> None:
    # Nothing listens on free_port: the request stays queued in the socket, which is what makes a
    # client with the default infinite LINGER hang when its context is terminated at exit.
    endpoint = f"tcp://127.0.0.1:{free_port}"
    process = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT, endpoint, mode], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed just before the interpreter starts exiting
        started = time.monotonic()
        returncode = process.wait(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.communicate()
    assert line.strip(), "the script did not get as far as its request"
    assert returncode == 0
    # A hang (infinite LINGER, blocked term) would take the full 60 s request timeout; a bare
    # interpreter exit with torch loaded takes ~3 s on a loaded 2-core machine (main's code alike).
    assert elapsed < 15.0


def test_n15_protocol(start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(protocol_version="n1.5")
    transport = transports(server.endpoint, timeout=5, protocol_version="n1.5")
    configs = transport.get_modality_config()
    assert configs["video"].modality_keys == ("video.exterior_image_1_left", "video.wrist_image_left")
    assert configs["video"].form.json_string
    action = transport.infer(flat_observation(3))
    assert action["action.joint_position"].shape == (3, 32, 7)
    assert transport.last_info is None
    transport.reset(None)  # N1.5 has no reset endpoint: nothing is sent
    with pytest.raises(ServerError, match="Unknown endpoint: reset"):
        transport.reset_policy()
    frame = encode({"endpoint": "get_action", "data": flat_observation(1)})
    assert isinstance(decode(server.handle(frame)), dict)  # N1.5 reply is the action map alone


def test_n16_client_against_n15_server_fails_cleanly(start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(protocol_version="n1.5")
    with pytest.raises(ServerError):
        transports(server.endpoint, timeout=5).infer(flat_observation(1))


def test_plain_field_maps_are_served_as_modality_configs(start_server: Start,
                                                        transports: Callable[..., Gr00tTransport]) -> None:
    class Policy:
        def get_action(self, observation: Any, options: Any = None) -> Any:
            return {}, {}

        def get_modality_config(self) -> dict[str, Any]:
            return {"video": {"delta_indices": [0], "modality_keys": ["cam"]}, "note": "kept as is"}

    server = start_server(Policy())
    frame = server.handle(encode({"endpoint": "get_modality_config"}))
    raw = msgpack.unpackb(frame)
    assert raw["video"] == {"__ModalityConfig_class__": True, "as_json": {
        "delta_indices": [0], "modality_keys": ["cam"], "sin_cos_embedding_keys": None,
        "mean_std_embedding_keys": None, "action_configs": None}}
    assert raw["note"] == "kept as is"
    assert transports(server.endpoint, timeout=5).get_modality_config()["video"].modality_keys == ("cam",)


def test_binding_a_busy_port_is_a_transport_error(server: ReferenceServer) -> None:
    port = int(server.endpoint.rsplit(":", 1)[1])
    with pytest.raises(TransportError, match="cannot serve on .*the port is in use"):
        ReferenceServer(port=port).start()
