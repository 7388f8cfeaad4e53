"""The reference server's upstream behaviour, seen by plain HTTP clients and by requests + json_numpy."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import json_numpy
import numpy as np
import pytest
import requests
import torch
from arena_adapters_openvla.server import ReferenceServer, resolve_policy, start_reference_server

from arena_adapters.errors import ConfigError, TransportError
from arena_adapters.transport import ReplyFault

ServerFactory = Callable[..., ReferenceServer]
IMAGE = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
JSON = {"Content-Type": "application/json"}


def _post_with_json_numpy(endpoint: str, payload: Any) -> Any:
    """What the upstream docstring client does, without patching json globally."""
    response = requests.post(endpoint + "/act", data=json_numpy.dumps(payload), headers=JSON, timeout=10)
    assert response.status_code == 200
    return json_numpy.loads(response.text)


def test_requests_and_json_numpy_client_gets_the_dummy_action(openvla_server: ReferenceServer) -> None:
    action = _post_with_json_numpy(openvla_server.endpoint, {"image": IMAGE, "instruction": "pick up the cup"})
    assert action.dtype == np.float64 and action.shape == (7,)
    assert action[3:].tolist() == [224.0, 224.0, 15.0, 0.0]


def test_requests_and_json_numpy_client_gets_an_oft_chunk(oft_server: ReferenceServer) -> None:
    payload = {"full_image": IMAGE[:8, :8], "wrist_image": IMAGE[:8, :8], "state": np.ones(8), "instruction": "go"}
    chunk = _post_with_json_numpy(oft_server.endpoint, payload)
    assert isinstance(chunk, list) and len(chunk) == 8
    assert [row[6] for row in chunk] == [9.0 + i for i in range(8)]


def test_non_json_body_is_422_like_fastapi(openvla_server: ReferenceServer) -> None:
    response = httpx.post(openvla_server.endpoint + "/act", content=b"not json", headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_json_that_is_not_an_object_is_422(openvla_server: ReferenceServer) -> None:
    response = httpx.post(openvla_server.endpoint + "/act", content=b"[1, 2]", headers=JSON)
    assert response.status_code == 422


def test_get_act_is_405_and_openapi_is_200(openvla_server: ReferenceServer) -> None:
    assert httpx.get(openvla_server.endpoint + "/act").status_code == 405
    openapi = httpx.get(openvla_server.endpoint + "/openapi.json")
    assert openapi.status_code == 200 and "post" in openapi.json()["paths"]["/act"]


def test_any_handler_exception_answers_200_error(start_server: ServerFactory) -> None:
    def broken(payload: dict[str, Any]) -> np.ndarray:
        raise RuntimeError("model exploded")

    server = start_server(broken)
    response = httpx.post(server.endpoint + "/act", content=b'{"image": 1}', headers=JSON)
    assert (response.status_code, response.content) == (200, b'"error"')
    extra_key = httpx.post(server.endpoint + "/act", content=b'{"encoded": "{}", "x": 1}', headers=JSON)
    assert extra_key.content == b'"error"'
    assert server.stats.errors == 2 and server.stats.requests == 2


def test_policy_forms(start_server: ServerFactory) -> None:
    class Upstream:
        def predict_action(self, payload: dict[str, Any]) -> np.ndarray:
            return np.array([1.0])

    class Oft:
        def get_server_action(self, payload: dict[str, Any]) -> list[torch.Tensor]:
            return [torch.tensor([2.0]), torch.tensor([3.0])]

    for policy, expected in [(Upstream(), [1.0]), (Upstream, [1.0]), (Oft(), [[2.0], [3.0]])]:
        server = start_server(policy)
        reply = _post_with_json_numpy(server.endpoint, {"instruction": "x"})
        assert np.asarray(reply).tolist() == expected
    by_name = resolve_policy("arena_adapters_openvla.dummy_policy:DummyOpenVlaPolicy")
    assert by_name({"image": IMAGE, "instruction": ""})[3] == 224
    with pytest.raises(ConfigError, match="predict_action"):
        resolve_policy(42)


def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = start_reference_server(port=0)
    port = server.port
    server.stop()
    server.stop()
    server.wait()
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_a_busy_port_is_the_cores_start_failure(openvla_server: ReferenceServer) -> None:
    with pytest.raises(TransportError, match="OpenVLA reference server cannot serve on .*the port is in use"):
        start_reference_server(port=openvla_server.port)


def test_bad_server_variant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="variant"):
        start_reference_server(port=0, variant="pi0")


def test_a_fault_injector_that_is_not_callable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fault_injector"):
        start_reference_server(port=0, fault_injector=42)  # type: ignore[arg-type]


def reply_one(reply: bytes) -> ReplyFault:
    """A fault injector for the test below: every reply becomes the action [1.0]."""
    return ReplyFault("replace", b'{"__numpy__":"AAAAAAAA8D8=","dtype":"<f8","shape":[1]}')


def test_a_fault_injector_may_be_named_by_module_and_attribute(start_server: ServerFactory) -> None:
    server = start_server(fault_injector=f"{__name__}:reply_one")
    assert _post_with_json_numpy(server.endpoint, {"image": IMAGE, "instruction": "x"}).tolist() == [1.0]
