"""Our WebSocket transport against our reference server on loopback: fan-out, errors, recovery."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_openpi.builtin_policy import EchoStatePolicy
from arena_adapters_openpi.observations import layout_of, synthetic_request
from arena_adapters_openpi.server import ReferenceServer
from arena_adapters_openpi.transport import WebsocketTransport

from arena_adapters.errors import ConfigError, ProtocolError, ServerError, TransportError, TransportTimeout

ServerFactory = Callable[..., ReferenceServer]


def droid_request(joint0: float = 0.0, prompt: str = "pick up the cup") -> dict[str, Any]:
    request = synthetic_request(layout_of("droid"), prompt)
    request["observation/joint_position"] = request["observation/joint_position"].copy()
    request["observation/joint_position"][0] = joint0
    return request




class FailingOnPrompt:
    """Raises for observations whose prompt is ``"fail"``; otherwise the built-in test policy."""

    def __init__(self) -> None:
        self.inner = EchoStatePolicy()

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if obs.get("prompt") == "fail":
            raise RuntimeError("deliberate failure for the test")
        return self.inner.infer(obs)


def test_single_request_metadata_and_health(server_factory: ServerFactory, transports: Any,
                                            builtin_chunk: Any) -> None:
    server = server_factory(metadata={"reset_pose": [0, -1.5, 1.5, 0, 0, 0]})
    transport = transports(server.endpoint)
    assert transport.metadata() == {"reset_pose": [0, -1.5, 1.5, 0, 0, 0]}
    health = transport.health()
    assert health.ok and "200" in health.detail
    request = droid_request(0.25)
    reply = transport.infer(request)
    state = np.concatenate([request["observation/joint_position"], request["observation/gripper_position"]])
    np.testing.assert_array_equal(reply["actions"], builtin_chunk(state))
    assert list(reply) == ["actions", "policy_timing", "server_timing"]
    assert "prev_total_ms" not in reply["server_timing"]
    assert "prev_total_ms" in transport.infer(request)["server_timing"]


def test_sixteen_envs_are_sent_concurrently_and_returned_in_env_order(
    server_factory: ServerFactory, transports: Any
) -> None:
    server = server_factory(infer_in_thread=True, workers=16, delay=0.3)
    transport = transports(server.endpoint)
    requests = [droid_request(float(env)) for env in range(16)]
    replies = transport.infer(requests)
    assert [float(r["actions"][0, 0]) for r in replies] == [float(env) for env in range(16)]
    assert server.requests == 16
    assert server.max_in_flight >= 8, f"only {server.max_in_flight} requests overlapped"


def test_connections_have_no_threads_of_their_own(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(infer_in_thread=True, workers=8, delay=0.05)
    transport = transports(server.endpoint, max_concurrency=8)
    transport.connect()
    threads_before = client_threads()
    replies = transport.infer([droid_request(float(env)) for env in range(8)])
    assert [float(r["actions"][0, 0]) for r in replies] == [float(env) for env in range(8)]
    assert server.max_in_flight >= 4, f"only {server.max_in_flight} requests overlapped"
    assert transport.open_connections == 8
    assert client_threads() == threads_before


def client_threads() -> set[threading.Thread]:
    """This process's threads, less the in-process reference server's."""
    return {thread for thread in threading.enumerate() if not thread.name.startswith(("openpi-infer", "openpi-server"))}


def test_max_concurrency_one_sends_one_after_another(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(infer_in_thread=True, workers=16, delay=0.05)
    replies = transports(server.endpoint, max_concurrency=1).infer([droid_request(float(e)) for e in range(4)])
    assert [float(r["actions"][0, 0]) for r in replies] == [0.0, 1.0, 2.0, 3.0]
    assert server.max_in_flight == 1


def test_replicas_share_the_envs_through_the_core(server_factory: ServerFactory) -> None:
    from arena_adapters import load_policy
    from arena_adapters.examples import droid_observation

    servers = [server_factory(), server_factory()]
    with load_policy("openpi", endpoint=",".join(s.endpoint for s in servers), max_concurrency=8) as policy:
        assert policy.get_action(droid_observation(16)).shape == (16, 8)
        policy.connect()
        assert [str(t.endpoint) for t in policy.replicas.transports] == [s.endpoint for s in servers]
    assert [s.requests for s in servers] == [8, 8]


def test_replicas_get_their_envs_messages_from_one_translation(server_factory: ServerFactory) -> None:
    from arena_adapters import load_policy
    from arena_adapters.examples import droid_observation

    servers = [server_factory(), server_factory()]
    observation = droid_observation(16)
    with load_policy("openpi", endpoint=",".join(s.endpoint for s in servers), execute_steps=4) as policy:
        with load_policy("openpi", endpoint=server_factory().endpoint, execute_steps=4) as alone:
            expected = alone.get_action(observation)
        translate = policy.observation_translator.translate
        queried: list[list[int]] = []

        def counted(obs: Any, query: Any) -> Any:
            queried.append(query.env_ids_host.tolist())
            return translate(obs, query)

        policy.observation_translator.translate = counted  # type: ignore[method-assign]
        torch.testing.assert_close(policy.get_action(observation), expected)
        policy.reset(np.array([3, 9, 12]))
        actions = policy.get_action(observation)
    assert queried == [list(range(16)), [3, 9, 12]]  # once per query, not once per replica
    assert [s.requests for s in servers] == [9, 10]  # envs 0-7 and 3 at one, 8-15, 9 and 12 at the other
    for env in (3, 9, 12):  # each replica answered its own envs' messages: the first action again
        torch.testing.assert_close(actions[env], expected[env])


class NonFiniteActions:
    """The built-in test policy, with NaN actions."""

    def __init__(self) -> None:
        self.inner = EchoStatePolicy()

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        reply = self.inner.infer(obs)
        reply["actions"] = np.full_like(reply["actions"], np.nan)
        return reply


def test_bad_replies_from_one_replica_name_that_replica(server_factory: ServerFactory) -> None:
    from arena_adapters import load_policy
    from arena_adapters.errors import ActionError
    from arena_adapters.examples import droid_observation

    good, bad = server_factory(), server_factory(NonFiniteActions())
    with (load_policy("openpi", endpoint=f"{good.endpoint},{bad.endpoint}") as policy,
          pytest.raises(ActionError, match="NaN or infinity") as raised):
        policy.get_action(droid_observation(8))
    assert raised.value.endpoint == bad.endpoint and "for 4 envs [4, 5, 6, 7]" in str(raised.value)


def test_a_dead_replica_is_skipped_by_the_core(server_factory: ServerFactory) -> None:
    from arena_adapters import load_policy
    from arena_adapters.examples import droid_observation

    alive, dead = server_factory(), server_factory()
    dead.stop()
    with load_policy("openpi", endpoint=f"{dead.endpoint},{alive.endpoint}", retry_attempts=1) as policy:
        assert policy.get_action(droid_observation(4)).shape == (4, 8)
    assert alive.requests == 4


def test_server_traceback_is_a_server_error_and_the_next_call_reconnects(
    server_factory: ServerFactory, transports: Any
) -> None:
    server = server_factory(FailingOnPrompt())
    transport = transports(server.endpoint)
    transport.infer(droid_request())
    with pytest.raises(ServerError) as raised:
        transport.infer(droid_request(prompt="fail"))
    error = raised.value
    assert error.server_message.startswith("Traceback (most recent call last):\n")
    assert "RuntimeError: deliberate failure for the test" in error.server_message
    assert "1011" in str(error) and "deliberate failure" in str(error)
    connections = server.connections
    assert transport.infer(droid_request(1.0))["actions"][0, 0] == 1.0
    assert server.connections == connections + 1


def test_one_failing_env_names_its_index_and_others_recover(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(FailingOnPrompt(), infer_in_thread=True)
    transport = transports(server.endpoint)
    requests = [droid_request(float(e), prompt="fail" if e == 5 else "ok") for e in range(8)]
    with pytest.raises(ServerError, match="env request 5 of 8"):
        transport.infer(requests)
    requests[5] = droid_request(5.0)
    assert [float(r["actions"][0, 0]) for r in transport.infer(requests)] == [float(e) for e in range(8)]


def test_server_stopped_then_restarted_on_the_same_port(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory()
    transport = transports(server.endpoint, retry_attempts=2, retry_backoff=0.01)
    assert transport.infer(droid_request(1.0))["actions"][0, 0] == 1.0
    server.stop()
    with pytest.raises(TransportError, match="refused") as raised:
        transport.infer(droid_request(2.0))
    assert not isinstance(raised.value, TransportTimeout)
    restarted = server_factory(port=server.port)
    assert transport.infer(droid_request(3.0))["actions"][0, 0] == 3.0
    assert restarted.requests == 1


def test_an_idle_connection_closed_by_a_restart_is_retried_transparently(
    server_factory: ServerFactory, transports: Any
) -> None:
    server = server_factory()
    transport = transports(server.endpoint, retry_attempts=2)
    transport.infer(droid_request())
    server.stop()
    restarted = server_factory(port=server.port)
    assert transport.infer(droid_request(4.0))["actions"][0, 0] == 4.0
    assert restarted.requests == 1


def test_no_reply_within_the_timeout_is_a_transport_timeout(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(delay=0.8)
    transport = transports(server.endpoint, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TransportTimeout):
        transport.infer(droid_request())
    elapsed = time.monotonic() - started
    with pytest.raises(TransportTimeout):
        transport.infer([droid_request(), droid_request()])
    assert elapsed < 5.0
    transport.timeout = 10.0
    assert transport.infer(droid_request(2.0))["actions"][0, 0] == 2.0


def test_a_silent_listener_is_a_connect_timeout(transports: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        transport = transports(f"ws://127.0.0.1:{port}", timeout=0.5, connect_timeout=0.5)
        with pytest.raises(TransportTimeout, match="handshake"):
            transport.infer(droid_request())


def test_refused_connection_is_a_transport_error(transports: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    transport = transports(f"ws://127.0.0.1:{port}", retry_attempts=1)
    with pytest.raises(TransportError, match="refused"):
        transport.connect()
    assert not transport.health().ok


def test_long_inference_survives_keepalive_when_the_pong_timeout_follows_the_timeout(
    server_factory: ServerFactory, transports: Any
) -> None:
    server = server_factory(delay=1.2)  # inference blocks the server's event loop, as upstream
    patient = transports(server.endpoint, timeout=10.0, keepalive_interval=0.2)
    assert patient.infer(droid_request(1.0))["actions"][0, 0] == 1.0
    impatient = transports(server.endpoint, timeout=10.0, keepalive_interval=0.2, keepalive_timeout=0.3)
    impatient.connect()
    with pytest.raises(TransportError, match="keepalive"):
        impatient.infer(droid_request())


def test_api_key_header(server_factory: ServerFactory, transports: Any) -> None:
    server = server_factory(api_key="s3cret")
    with pytest.raises(TransportError, match="401"):
        transports(server.endpoint).infer(droid_request())
    transports(server.endpoint, api_key="s3cret").infer(droid_request())
    assert server.last_headers["Authorization"] == "Api-Key s3cret"


def test_oversized_reply_is_refused_and_the_next_call_reconnects(server_factory: ServerFactory,
                                                                transports: Any) -> None:
    def policy(obs: dict[str, Any]) -> dict[str, Any]:
        size = 4096 if obs["prompt"] == "big" else 10
        return {"actions": np.zeros((size, 64), np.float32)}

    server = server_factory(policy)
    transport = transports(server.endpoint, max_message_bytes=100_000)
    with pytest.raises(ProtocolError, match="max_message_bytes"):
        transport.infer(droid_request(prompt="big"))
    assert transport.infer(droid_request())["actions"].shape == (10, 64)


def test_malformed_reply_with_object_dtype_is_refused(transports: Any) -> None:
    import msgpack
    from websockets.sync.server import serve

    def handler(websocket: Any) -> None:
        websocket.send(b"\x80")
        websocket.recv()
        bad = {b"__ndarray__": True, b"data": bytes(8), b"dtype": "|O", b"shape": [1]}
        websocket.send(msgpack.packb({"actions": bad}, use_bin_type=True))
        websocket.recv()

    with serve(handler, "127.0.0.1", 0) as raw_server:
        thread = threading.Thread(target=raw_server.serve_forever, daemon=True)
        thread.start()
        port = raw_server.socket.getsockname()[1]
        transport = transports(f"ws://127.0.0.1:{port}")
        with pytest.raises(ProtocolError, match="dtype"):
            transport.infer(droid_request())
        transport.close()
        raw_server.shutdown()
        thread.join(5)


def test_text_request_to_the_server_gets_traceback_and_1011(server: ReferenceServer) -> None:
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    with connect(server.endpoint, compression=None, max_size=None) as websocket:
        assert websocket.recv() == b"\x80"
        websocket.send("not msgpack")
        text = websocket.recv()
        assert isinstance(text, str) and text.startswith("Traceback (most recent call last):\n")
        with pytest.raises(ConnectionClosedError) as raised:
            websocket.recv()
    assert raised.value.rcvd is not None
    assert raised.value.rcvd.code == 1011
    assert raised.value.rcvd.reason == "Internal server error. Traceback included in previous frame."


def test_closed_transport_refuses_requests_and_close_is_idempotent(server: ReferenceServer, transports: Any) -> None:
    transport = transports(server.endpoint)
    transport.infer([droid_request(), droid_request()])
    transport.close()
    transport.close()
    with pytest.raises(TransportError, match="closed"):
        transport.infer(droid_request())


@pytest.mark.parametrize(("options", "expected"), [
    ({"endpoint": "http://127.0.0.1:8000"}, "ws://"),
    ({"endpoint": ""}, "endpoint"),
    ({"endpoint": "ws://127.0.0.1:8000", "max_concurrency": 0}, "max_concurrency"),
    ({"endpoint": "ws://127.0.0.1:8000", "timeout": 0}, "timeout"),
])
def test_bad_options_are_config_errors(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        WebsocketTransport(**options)


@pytest.mark.parametrize(("text", "url", "port"), [
    ("ws://127.0.0.1:8000", "ws://127.0.0.1:8000", 8000),
    ("127.0.0.1:9000", "ws://127.0.0.1:9000", 9000),
    ("localhost", "ws://localhost:8000", 8000),
    ("wss://example.org:8443/policy", "wss://example.org:8443/policy", 8443),
    ("ws://[::1]:8001", "ws://[::1]:8001", 8001),
])
def test_endpoint_forms(text: str, url: str, port: int) -> None:
    from arena_adapters_openpi.health import health_url

    with WebsocketTransport(text) as transport:
        assert (transport.endpoint.url, transport.endpoint.port) == (url, port)
        assert health_url(transport.endpoint).endswith(f":{port}/healthz")
