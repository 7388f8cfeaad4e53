"""The bearer token (client option and reference-server requirement), https endpoints, and the
reference server's request limits."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trustme
from arena_adapters_openvla.options import PROBE_OPTIONS, SERVER_OPTIONS, TRANSPORT_OPTIONS
from arena_adapters_openvla.probe import probe_server
from arena_adapters_openvla.server import ReferenceServer
from arena_adapters_openvla.transport import HttpTransport

import arena_adapters as aa
from arena_adapters.errors import ProtocolError, ServerError, TransportError
from arena_adapters.options import MASK, masked

ServerFactory = Callable[..., ReferenceServer]
Canned = Callable[..., Any]
IMAGE = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
PAYLOAD = {"image": IMAGE, "instruction": "pick up the cup"}
TOKEN = "s3cret-token"
JSON = {"Content-Type": "application/json"}
ONE = b'{"__numpy__":"AAAAAAAA8D8=","dtype":"<f8","shape":[1]}'


@pytest.fixture(scope="module")
def secured_server() -> Iterator[ReferenceServer]:
    from arena_adapters_openvla.server import start_reference_server

    server = start_reference_server(port=0, api_key=TOKEN)
    yield server
    server.stop()


def test_the_right_token_is_accepted(secured_server: ReferenceServer) -> None:
    with HttpTransport(secured_server.endpoint, api_key=TOKEN) as transport:
        assert transport.infer(PAYLOAD).shape == (7,)
        assert transport.health().ok


@pytest.mark.parametrize("api_key", [None, "wrong"])
def test_a_missing_or_wrong_token_is_refused_with_a_server_error_that_never_shows_a_token(
    secured_server: ReferenceServer, api_key: str | None
) -> None:
    before = secured_server.stats.requests
    with HttpTransport(secured_server.endpoint, api_key=api_key) as transport:
        with pytest.raises(ServerError, match="401.*not authorised: check the api_key option") as caught:
            transport.infer(PAYLOAD)
        health = transport.health()
    assert not caught.value.retryable
    assert TOKEN not in str(caught.value) and "wrong" not in str(caught.value)
    assert not health.ok and "401" in health.detail
    assert secured_server.stats.requests == before  # refused before the policy ran


def test_the_server_refuses_like_an_http_bearer_scheme(secured_server: ReferenceServer) -> None:
    response = httpx.post(secured_server.endpoint + "/act", content=b"{}", headers=JSON)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    ok = httpx.post(secured_server.endpoint + "/act", content=b"{}", headers={**JSON, "Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.content == b'"error"'  # authorised; the handler then refuses {}


def test_the_token_through_load_policy_is_masked_in_options_and_errors(
    secured_server: ReferenceServer, make_observation: Callable[..., dict[str, Any]]
) -> None:
    for options in (TRANSPORT_OPTIONS, SERVER_OPTIONS, PROBE_OPTIONS):
        (option,) = [option for option in options if option.name == "api_key"]
        assert option.secret and option.shown(TOKEN) == MASK
    assert masked({"api_key": TOKEN, "endpoint": "x"}) == {"api_key": MASK, "endpoint": "x"}
    with aa.load_policy("openvla", endpoint=secured_server.endpoint, api_key=TOKEN, resize="none") as policy:
        assert policy.get_action(make_observation(2, height=8, width=8)).shape == (2, 7)
    with aa.load_policy("openvla", endpoint=secured_server.endpoint, api_key="nope", resize="none") as policy, \
            pytest.raises(ServerError) as caught:
        policy.get_action(make_observation(1, height=8, width=8))
    assert "nope" not in str(caught.value) and "401" in str(caught.value)


def test_the_probe_takes_the_token(secured_server: ReferenceServer) -> None:
    assert probe_server(secured_server.endpoint, api_key=TOKEN, repeats=1).ok
    refused = probe_server(secured_server.endpoint)
    assert not refused.ok and "401" in refused.failure


# ------------------------------------------------------------------------------------- https


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(canned_server: Canned, certificate_authority: trustme.CA) -> Any:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return canned_server({"POST /act": (200, ONE)}, tls=context)


def test_https_endpoints_work_with_the_servers_ca(
    https_server: Any, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    assert https_server.endpoint.startswith("https://")
    with HttpTransport(https_server.endpoint, ca_file=str(ca_file), api_key=TOKEN) as transport:
        assert transport.infer(PAYLOAD).tolist() == [1.0]
        assert transport.infer(PAYLOAD).tolist() == [1.0]
    assert len(https_server.headers) == 2 and https_server.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert len(set(https_server.peers)) == 1  # one kept-alive TLS connection


def test_an_untrusted_certificate_is_refused_unless_verification_is_off(https_server: Any) -> None:
    with HttpTransport(https_server.endpoint, timeout=3.0) as transport, pytest.raises(
        TransportError, match="certificate verify failed|CERTIFICATE_VERIFY_FAILED|self.signed|unable to get"
    ) as caught:
        transport.infer(PAYLOAD)
    assert "ca_file" in str(caught.value)
    assert https_server.headers == []
    with HttpTransport(https_server.endpoint, verify=False) as transport:
        assert transport.infer(PAYLOAD).tolist() == [1.0]


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(aa.ConfigError, match="ca_file"):
        HttpTransport("https://127.0.0.1:8443", ca_file=str(tmp_path / "missing.pem"))


# ---------------------------------------------------------------------- server request limits


def test_the_server_refuses_requests_over_its_cap_with_413(start_server: ServerFactory) -> None:
    server = start_server(max_message_bytes=10_000)
    with HttpTransport(server.endpoint) as transport, pytest.raises(ProtocolError, match="413") as caught:
        transport.infer(PAYLOAD)  # ~200 KB
    assert "max_message_bytes=10,000" in str(caught.value)
    small = {"image": IMAGE[:8, :8], "instruction": "x"}
    with HttpTransport(server.endpoint) as transport:
        assert transport.infer(small).shape == (7,)
    assert server.stats.requests == 1


def test_the_server_decodes_requests_within_its_limits(start_server: ServerFactory) -> None:
    server = start_server(max_depth=8, max_array_bytes=1000)
    deep = b'{"x": ' + b"[" * 50 + b"]" * 50 + b"}"
    assert httpx.post(server.endpoint + "/act", content=deep, headers=JSON).status_code == 400
    big = {"image": IMAGE[:32, :32], "instruction": "x"}  # 3,072 bytes > 1,000
    with HttpTransport(server.endpoint) as transport, pytest.raises(ProtocolError, match="400"):
        transport.infer(big)
    huge_int = b'{"image": ' + b"1" * 5000 + b"}"
    assert httpx.post(server.endpoint + "/act", content=huge_int, headers=JSON).status_code == 400
    assert server.stats.requests == 0
