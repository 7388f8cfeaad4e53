"""Independent upstream code as a peer: openpi-client's WebsocketClientPolicy and msgpack_numpy
against our reference server; our client's bytes on the wire against the golden capture."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from arena_adapters_openpi.codec import encode
from arena_adapters_openpi.server import ReferenceServer
from arena_adapters_openpi.transport import WebsocketTransport
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.sync.server import ServerConnection, serve

from arena_adapters.testing.golden import GoldenCase, assert_strictly_equal

ServerFactory = Callable[..., ReferenceServer]

# openpi-client 0.1.2 connects without a context manager; websockets >= 17 warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def test_upstream_client_gets_metadata_and_replies_from_our_server(
    server_factory: ServerFactory, openpi_cases: dict[str, GoldenCase], rebuild_tree: Callable[[Any], Any],
    builtin_chunk: Any,
) -> None:
    server = server_factory(metadata={"reset_pose": [0, -1.5, 1.5, 0, 0, 0]})
    client = WebsocketClientPolicy(server.endpoint)
    assert client.get_server_metadata() == {"reset_pose": [0, -1.5, 1.5, 0, 0, 0]}
    observation = rebuild_tree(openpi_cases["openpi_droid_request"].message)
    first, second = client.infer(observation), client.infer(observation)
    state = np.concatenate([observation["observation/joint_position"], observation["observation/gripper_position"]])
    np.testing.assert_array_equal(first["actions"], builtin_chunk(state))
    assert first["actions"].dtype == np.float32
    assert list(first["server_timing"]) == ["infer_ms"]
    assert list(second["server_timing"]) == ["infer_ms", "prev_total_ms"]


@pytest.mark.parametrize("name", ["openpi_libero_request", "openpi_aloha_request"])
def test_upstream_client_with_libero_and_aloha_observations(
    name: str, server: ReferenceServer, openpi_cases: dict[str, GoldenCase], rebuild_tree: Callable[[Any], Any]
) -> None:
    observation = rebuild_tree(openpi_cases[name].message)
    actions = WebsocketClientPolicy(server.endpoint).infer(observation)["actions"]
    assert actions.shape == ((10, 7) if "libero" in name else (10, 14))


def test_upstream_client_sees_our_server_error_as_upstream_does(server_factory: ServerFactory) -> None:
    def failing(obs: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("dummy policy failure on call 1")

    client = WebsocketClientPolicy(server_factory(failing).endpoint)
    with pytest.raises(RuntimeError) as raised:
        client.infer({"prompt": "x"})
    message = str(raised.value)
    assert message.startswith("Error in inference server:\nTraceback (most recent call last):\n")
    assert "RuntimeError: dummy policy failure on call 1" in message


def test_our_metadata_frames_are_the_golden_bytes(server_factory: ServerFactory,
                                                  openpi_cases: dict[str, GoldenCase]) -> None:
    from websockets.sync.client import connect

    for metadata, case in (({}, "openpi_metadata_empty"), ({"reset_pose": [0, -1.5, 1.5, 0, 0, 0]},
                                                             "openpi_metadata_default")):
        with connect(server_factory(metadata=metadata).endpoint, compression=None) as websocket:
            assert websocket.recv() == openpi_cases[case].data


def test_our_server_reply_encodes_like_upstream(server_factory: ServerFactory,
                                                openpi_cases: dict[str, GoldenCase],
                                                rebuild_tree: Callable[[Any], Any]) -> None:
    fixed = rebuild_tree(openpi_cases["openpi_reply_fixed_timing"].message)
    reply = {"actions": fixed["actions"], "policy_timing": fixed["policy_timing"]}
    client = WebsocketClientPolicy(server_factory(lambda obs: dict(reply)).endpoint)
    got = client.infer({"prompt": "x"})
    assert list(got) == ["actions", "policy_timing", "server_timing"]
    got["server_timing"] = fixed["server_timing"]
    assert msgpack_numpy.packb(got) == openpi_cases["openpi_reply_fixed_timing"].data


def test_our_client_puts_the_golden_request_bytes_on_the_wire(
    openpi_cases: dict[str, GoldenCase], rebuild_tree: Callable[[Any], Any]
) -> None:
    """A recording server (plain websockets, no code of ours) captures what our transport sends."""
    received: list[bytes] = []
    reply = openpi_cases["openpi_reply_fixed_timing"].data
    headers: dict[str, str] = {}

    def handler(websocket: ServerConnection) -> None:
        assert websocket.request is not None
        headers.update(websocket.request.headers.raw_items())
        websocket.send(openpi_cases["openpi_metadata_empty"].data)
        for message in websocket:
            received.append(message if isinstance(message, bytes) else message.encode())
            websocket.send(reply)

    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as recorder:
        thread = threading.Thread(target=recorder.serve_forever, daemon=True)
        thread.start()
        port = recorder.socket.getsockname()[1]
        transport = WebsocketTransport(f"ws://127.0.0.1:{port}", timeout=10.0, api_key="k3y")
        try:
            names = ["openpi_droid_request", "openpi_libero_request", "openpi_aloha_request"]
            replies = transport.infer([rebuild_tree(openpi_cases[name].message) for name in names])
        finally:
            transport.close()
            recorder.shutdown()
            thread.join(5)
    assert sorted(received) == sorted(openpi_cases[name].data for name in names)
    expected_reply = msgpack_numpy.unpackb(reply)
    for got in replies:
        assert_strictly_equal(got, expected_reply)
    assert headers["Authorization"] == "Api-Key k3y"
    assert "permessage-deflate" not in headers.get("Sec-WebSocket-Extensions", "")


def test_upstream_packer_and_ours_agree_on_a_full_droid_observation(
    openpi_cases: dict[str, GoldenCase], rebuild_tree: Callable[[Any], Any]
) -> None:
    observation = rebuild_tree(openpi_cases["openpi_droid_request"].message)
    assert encode(observation) == msgpack_numpy.Packer().pack(observation) == openpi_cases["openpi_droid_request"].data
