"""Fuzzing the openpi decoders: the client's reply decoder and the reference server's request
decoder. Seeded with the golden cases and with structured hostile inputs; only ProtocolError may
come out, and nothing is allocated from a declared size before it is checked."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
from arena_adapters_openpi.server import ReferenceServer
from arena_adapters_openpi.transport import WebsocketTransport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena_adapters.errors import ProtocolError
from arena_adapters.testing.golden import GoldenCase

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KIB = 1024


@pytest.fixture(scope="module")
def decoders() -> Iterator[dict[str, Callable[[bytes], Any]]]:
    """The two decoders under test, with small limits so that 'over the limit' is cheap to reach."""
    transport = WebsocketTransport("ws://127.0.0.1:9", max_message_bytes=256 * KIB, max_array_bytes=200 * KIB,
                                   max_depth=16)
    server = ReferenceServer(max_message_bytes=256 * KIB, max_array_bytes=200 * KIB, max_depth=16)
    yield {"client reply": transport.decode_reply, "server request": server.decode_request}
    transport.close()


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _array(dtype: Any, shape: Any, data: Any = b"") -> dict[bytes, Any]:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def _scalar(dtype: Any, data: Any) -> dict[bytes, Any]:
    return {b"__npgeneric__": True, b"data": data, b"dtype": dtype}


HOSTILE: dict[str, bytes] = {
    "issue 9: 'S' scalar of 2**31": _pack(_scalar("S", 2**31)),
    "S8 scalar of 2**31": _pack(_scalar("|S8", 2**31)),
    "U4 scalar of 2**31": _pack(_scalar("<U4", 2**31)),
    "V scalar of 2**31": _pack(_scalar("|V8", 2**31)),
    "array of 2**40 float32": _pack(_array("<f4", [2**40], bytes(16))),
    "array of 2**62 x 2**62": _pack(_array("<f8", [2**62, 2**62], bytes(8))),
    "array over max_array_bytes": _pack(_array("|u1", [300 * KIB], bytes(300 * KIB))),
    "U of 2**28 chars": _pack(_array("<U268435456", [4], bytes(16))),
    "object array": _pack({"a": _array("|O", [1], bytes(8))}),
    "void array": _pack(_array("|V16", [1], bytes(16))),
    "structured array": _pack(_array("<f4,<i4", [1], bytes(8))),
    "sub-array dtype": _pack(_array("(1000000,)<f4", [1], bytes(4))),
    "complex array": _pack(_array("<c16", [1], bytes(16))),
    "zero-size dtype": _pack(_array("S0", [2**40], b"")),
    "dtype of 10,000 chars": _pack(_array("<f" + "4" * 10_000, [1], bytes(4))),
    "dtype as a map": _pack(_array({"descr": "<f4"}, [1], bytes(4))),
    "shape of 100 dims": _pack(_array("<f4", [1] * 100, bytes(4))),
    "negative dim": _pack(_array("<f4", [-1], b"")),
    "bin32 declaring 4 GiB": b"\xc6\xff\xff\xff\xff" + bytes(8),
    "str32 declaring 4 GiB": b"\xdb\xff\xff\xff\xff" + bytes(8),
    "array32 declaring 2**32 items": b"\xdd\xff\xff\xff\xff",
    "map32 declaring 2**32 pairs": b"\xdf\xff\xff\xff\xff",
    "ext32 declaring 4 GiB": b"\xc9\xff\xff\xff\xff\x01",
    "nested lists, 10,000 deep": b"\x91" * 10_000 + b"\x00",
    "nested maps, 17 deep": b"\x81\xa1a" * 17 + b"\x00",
    "message over max_message_bytes": _pack({"a": bytes(300 * KIB)}),
    "truncated": _pack({"actions": _array("<f4", [4], bytes(16))})[:-5],
    "empty": b"",
    "reserved byte": b"\xc1",
}


@pytest.mark.parametrize("side", ["client reply", "server request"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_inputs_are_protocol_errors_without_allocating(
    name: str, side: str, decoders: dict[str, Callable[[bytes], Any]]
) -> None:
    data = HOSTILE[name]
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decoders[side](data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + 2 * 2**20, f"{name}: peak {peak:,} bytes for a {len(data):,}-byte input"


def test_nesting_up_to_max_depth_is_accepted(decoders: dict[str, Callable[[bytes], Any]]) -> None:
    for decode in decoders.values():
        value = decode(b"\x91" * 16 + b"\x00")
        for _ in range(16):
            value = value[0]
        assert value == 0
        with pytest.raises(ProtocolError, match="max_depth=16"):
            decode(b"\x91" * 17 + b"\x00")


def _golden_bytes(openpi_cases: dict[str, GoldenCase]) -> list[bytes]:
    return [case.data for case in openpi_cases.values() if case.compare == "bytes"]


def _check_outcome(decode: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@FUZZ
@given(data=st.data())
def test_mutated_golden_cases_give_a_value_or_a_protocol_error(
    data: st.DataObject, openpi_cases: dict[str, GoldenCase], decoders: dict[str, Callable[[bytes], Any]]
) -> None:
    seed = bytearray(data.draw(st.sampled_from(_golden_bytes(openpi_cases))))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(seed) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "delete", "insert"]))
        if action == "flip":
            seed[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            seed[position] = data.draw(st.sampled_from([0x00, 0xC1, 0xC6, 0xDD, 0xDF, 0xFF, 0x7F, 0x80]))
        elif action == "delete":
            del seed[position]
        else:
            seed[position:position] = data.draw(st.binary(min_size=1, max_size=9))
        if not seed:
            break
    if data.draw(st.booleans()):
        seed = seed[: data.draw(st.integers(0, len(seed)))]
    for decode in decoders.values():
        _check_outcome(decode, bytes(seed))


@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes_give_a_value_or_a_protocol_error(
    raw: bytes, decoders: dict[str, Callable[[bytes], Any]]
) -> None:
    for decode in decoders.values():
        _check_outcome(decode, raw)


_DTYPE_TEXT = st.one_of(
    st.sampled_from(["<f4", "|u1", "|b1", "<i8", "S", "U", "|S8", "<U4", "O", "|V8", "<c8", "M8[ns]", "m8", "<f4,<i4",
                     "(3,)<f4", "float32", ">f2", "", "\x00", "<f" + "4" * 40]),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.integers(),
    st.none(),
)
_DECLARED = st.one_of(st.integers(-3, 64), st.integers(2**20, 2**64), st.sampled_from([2**31, 2**32, 2**63 - 1]))
_DATA = st.one_of(st.binary(max_size=64), _DECLARED, st.text(max_size=8), st.floats(), st.booleans(), st.none(),
                  st.lists(st.integers(), max_size=3))


@settings(FUZZ, max_examples=120)
@given(
    kind=st.sampled_from(["array", "scalar"]),
    dtype=_DTYPE_TEXT,
    shape=st.one_of(st.lists(_DECLARED, max_size=5), _DECLARED, st.text(max_size=4)),
    payload=_DATA,
    nest=st.integers(0, 20),
)
def test_structured_hostile_arrays_and_scalars_are_bounded(
    kind: str, dtype: Any, shape: Any, payload: Any, nest: int, decoders: dict[str, Callable[[bytes], Any]]
) -> None:
    node: Any = _array(dtype, shape, payload) if kind == "array" else _scalar(dtype, payload)
    for _ in range(nest):
        node = {"k": node}
    try:
        data = _pack(node)
    except (OverflowError, ValueError, TypeError):
        return  # not representable in msgpack
    tracemalloc.start()
    try:
        for decode in decoders.values():
            try:
                value = decode(data)
            except ProtocolError:
                continue
            _assert_small(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, f"peak {peak:,} bytes for a {len(data)}-byte message"


def _assert_small(value: Any) -> None:
    while isinstance(value, dict) and "k" in value:
        value = value["k"]
    if isinstance(value, (np.ndarray, np.generic)):
        assert value.nbytes <= 200 * KIB


def test_a_valid_reply_still_decodes(decoders: dict[str, Callable[[bytes], Any]]) -> None:
    reply = _pack({"actions": _array("<f4", [2, 3], np.arange(6, dtype=np.float32).tobytes())})
    for decode in decoders.values():
        np.testing.assert_array_equal(decode(reply)["actions"], np.arange(6, dtype=np.float32).reshape(2, 3))
