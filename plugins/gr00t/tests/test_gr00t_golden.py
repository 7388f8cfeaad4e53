"""The golden GR00T vectors recorded from the real upstream client and server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from arena_adapters_gr00t.codec import decode, encode
from arena_adapters_gr00t.server import ReferenceServer

from arena_adapters.testing.golden import GoldenCase, assert_strictly_equal

GOLDEN_NAMES = [
    "ping_request", "ping_reply", "ping_request_token", "error_unauthorized_reply",
    "get_modality_config_request", "get_modality_config_reply", "get_action_nested_request",
    "get_action_nested_reply", "get_action_nested_batch4_request", "get_action_nested_batch4_reply",
    "get_action_flat_droid_request", "get_action_flat_droid_reply", "reset_request", "reset_reply",
    "get_action_float64_state_request", "error_float64_state_reply", "unknown_endpoint_request",
    "error_unknown_endpoint_reply", "kill_request_token", "kill_reply", "ser_f8_fortran", "ser_i8",
    "ser_bool", "ser_f4_0d", "ser_f4_2x3", "ser_u1_image",
]


def test_every_gr00t_case_is_covered(golden_cases: dict[str, GoldenCase]) -> None:
    assert sorted(golden_cases) == sorted(f"gr00t_{name}" for name in GOLDEN_NAMES)
    assert all(case.compare == "bytes" for case in golden_cases.values())


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_encoder_reproduces_bytes(name: str, golden_cases: dict[str, GoldenCase],
                                  rebuild_value: Callable[[Any], Any]) -> None:
    case = golden_cases[f"gr00t_{name}"]
    assert encode(rebuild_value(case.input)) == case.data


@pytest.mark.parametrize("name", GOLDEN_NAMES)
@pytest.mark.parametrize("writable", [False, True])
def test_decoder_returns_message(name: str, writable: bool, golden_cases: dict[str, GoldenCase],
                                 rebuild_value: Callable[[Any], Any]) -> None:
    case = golden_cases[f"gr00t_{name}"]
    assert_strictly_equal(decode(case.data, writable=writable), rebuild_value(case.message))


def test_decoded_modality_config_re_encodes_identically(golden_cases: dict[str, GoldenCase]) -> None:
    data = golden_cases["gr00t_get_modality_config_reply"].data
    configs = decode(data)
    assert configs["action"].horizon == 32
    assert configs["action"].action_configs[0].rep == "RELATIVE"
    assert encode(configs) == data


# Each golden request, answered by our reference server, gives the reply the upstream server gave.
SERVER_CASES = [
    ({"format": "nested"}, "ping_request", "ping_reply"),
    ({"format": "nested"}, "get_modality_config_request", "get_modality_config_reply"),
    ({"format": "nested"}, "get_action_nested_request", "get_action_nested_reply"),
    ({"format": "nested"}, "get_action_nested_batch4_request", "get_action_nested_batch4_reply"),
    ({"format": "flat"}, "get_action_flat_droid_request", "get_action_flat_droid_reply"),
    ({"format": "nested"}, "reset_request", "reset_reply"),
    ({"format": "nested"}, "get_action_float64_state_request", "error_float64_state_reply"),
    ({"format": "nested"}, "unknown_endpoint_request", "error_unknown_endpoint_reply"),
    ({"format": "nested", "api_token": "s3cret"}, "ping_request", "error_unauthorized_reply"),
    ({"format": "nested", "api_token": "s3cret"}, "ping_request_token", "ping_reply"),
    ({"format": "nested", "api_token": "s3cret"}, "kill_request_token", "kill_reply"),
]


@pytest.mark.parametrize(("options", "request_name", "reply_name"), SERVER_CASES)
def test_reference_server_replies_like_upstream(options: dict[str, Any], request_name: str, reply_name: str,
                                                golden_cases: dict[str, GoldenCase]) -> None:
    server = ReferenceServer(**options)  # handle() needs no socket
    reply = server.handle(golden_cases[f"gr00t_{request_name}"].data)
    assert reply == golden_cases[f"gr00t_{reply_name}"].data
