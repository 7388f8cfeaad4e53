"""The golden ``openvla`` cases: bytes recorded from the real deploy.py servers and json_numpy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from arena_adapters_openvla import codec
from arena_adapters_openvla.server import ReferenceServer

from arena_adapters.testing.golden import GoldenCase, assert_strictly_equal, rebuild

CASE_NAMES = [
    "openvla_act_request",
    "openvla_act_reply",
    "openvla_act_encoded_request",
    "openvla_act_encoded_reply",
    "openvla_error_missing_image_request",
    "openvla_error_reply",
    "openvla_oft_request",
    "openvla_oft_reply",
    "openvla_jn_f4_2x3",
    "openvla_jn_scalar_f4",
    "openvla_jn_scalar_i8",
    "openvla_jn_f8_fortran",
]


def _json_text(value: Any, separators: tuple[str, str]) -> str:
    return codec.encode(value, separators=separators).decode("ascii")


def _value(case: GoldenCase, tree: Any) -> Any:
    """The case's value, with ``$json`` markers made into strings by our own encoder."""
    return rebuild(tree, on_json=_json_text)


def _separators(case: GoldenCase) -> tuple[str, str]:
    item, key = case.entry["json_separators"]
    return (item, key)


def test_every_openvla_case_is_covered(openvla_cases: dict[str, GoldenCase]) -> None:
    assert sorted(openvla_cases) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decoder_reads_every_case(name: str, openvla_cases: dict[str, GoldenCase]) -> None:
    case = openvla_cases[name]
    assert_strictly_equal(codec.decode(case.data), _value(case, case.message))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_encoder_reproduces_every_case_byte_for_byte_with_upstream_separators(
    name: str, openvla_cases: dict[str, GoldenCase]
) -> None:
    case = openvla_cases[name]
    value = _value(case, case.input)
    if isinstance(value, str) and name != "openvla_error_reply":
        body = codec.encode_json_string(value.encode("ascii"))  # the double-encoded reply: a JSON string
    else:
        body = codec.encode(value, separators=_separators(case))
    assert body == case.data


def test_double_encoded_cases_decode_twice(openvla_cases: dict[str, GoldenCase]) -> None:
    request = codec.decode(openvla_cases["openvla_act_encoded_request"].data)
    inner = codec.decode(request["encoded"])
    assert list(inner) == ["image", "instruction", "unnorm_key"] and inner["image"].shape == (16, 16, 3)
    assert codec.encode_double(inner) == openvla_cases["openvla_act_encoded_request"].data
    action = codec.decode(codec.decode(openvla_cases["openvla_act_encoded_reply"].data))
    assert action.shape == (7,) and action[3:].tolist() == [16.0, 16.0, 15.0, 1.0]


@pytest.mark.parametrize(
    "request_name, reply_name",
    [
        ("openvla_act_request", "openvla_act_reply"),
        ("openvla_act_encoded_request", "openvla_act_encoded_reply"),
        ("openvla_error_missing_image_request", "openvla_error_reply"),
    ],
)
def test_reference_server_answers_golden_requests_with_the_golden_bytes(
    request_name: str, reply_name: str, openvla_cases: dict[str, GoldenCase], openvla_server: ReferenceServer
) -> None:
    _check_reply(openvla_server, openvla_cases[request_name], openvla_cases[reply_name])


def test_oft_reference_server_answers_the_golden_request_with_the_golden_bytes(
    openvla_cases: dict[str, GoldenCase], oft_server: ReferenceServer
) -> None:
    _check_reply(oft_server, openvla_cases["openvla_oft_request"], openvla_cases["openvla_oft_reply"])


def _check_reply(server: ReferenceServer, request: GoldenCase, reply: GoldenCase) -> None:
    http = request.entry["http"]
    response = httpx.post(
        server.endpoint + http["path"], content=request.data, headers={"Content-Type": http["content_type"]}
    )
    assert response.status_code == reply.entry["http"]["status"]
    assert response.headers["content-type"] == reply.entry["http"]["content_type"]
    assert response.content == reply.data
