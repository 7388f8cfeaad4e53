"""The openpi codec against the golden vectors and against openpi_client.msgpack_numpy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from arena_adapters_openpi.codec import DecodeLimits, EncodeError, decode, encode
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from openpi_client import msgpack_numpy

from arena_adapters.errors import ProtocolError
from arena_adapters.testing.golden import GoldenCase, assert_strictly_equal

BYTES_CASES = [
    "openpi_metadata_empty", "openpi_droid_request", "openpi_droid_reply", "openpi_droid_reply_second",
    "openpi_libero_request", "openpi_metadata_default", "openpi_aloha_request", "openpi_reply_fixed_timing",
    "openpi_scalar_float32", "openpi_scalar_int64", "openpi_scalar_bool", "openpi_scalar_float64",
    "openpi_fortran_input", "openpi_arrays_misc",
]


def test_every_openpi_case_is_covered(openpi_cases: dict[str, GoldenCase]) -> None:
    bytes_cases = {name for name, case in openpi_cases.items() if case.compare == "bytes"}
    assert bytes_cases == set(BYTES_CASES)
    assert {name for name, case in openpi_cases.items() if case.compare != "bytes"} == {"openpi_error_text_frame"}


@pytest.mark.parametrize("name", BYTES_CASES)
def test_encoder_reproduces_golden_bytes(
    name: str, openpi_cases: dict[str, GoldenCase], rebuild_tree: Callable[[Any], Any]
) -> None:
    case = openpi_cases[name]
    assert encode(rebuild_tree(case.input)) == case.data


@pytest.mark.parametrize("name", BYTES_CASES)
def test_decoder_reads_golden_bytes(
    name: str, openpi_cases: dict[str, GoldenCase], rebuild_tree: Callable[[Any], Any]
) -> None:
    case = openpi_cases[name]
    assert_strictly_equal(decode(case.data), rebuild_tree(case.message))


def test_error_frame_is_text_with_the_traceback(openpi_cases: dict[str, GoldenCase]) -> None:
    case = openpi_cases["openpi_error_text_frame"]
    text = case.data.decode("utf-8")
    assert text.startswith(case.entry["prefix"])
    for fragment in case.entry["contains"]:
        assert fragment in text
    with pytest.raises(ProtocolError):
        decode(text)


def test_array_map_keys_are_bin_in_upstream_order() -> None:
    raw = msgpack.unpackb(encode(np.zeros((2, 3), np.float32)), raw=False)
    assert list(raw) == [b"__ndarray__", b"data", b"dtype", b"shape"]
    assert raw[b"dtype"] == "<f4" and raw[b"shape"] == [2, 3] and raw[b"data"] == bytes(24)


def test_decoded_arrays_are_read_only_views() -> None:
    array = decode(encode({"a": np.arange(6, dtype=np.int32)}))["a"]
    assert not array.flags.writeable
    assert array.tolist() == [0, 1, 2, 3, 4, 5]


def test_non_contiguous_arrays_are_sent_in_c_order() -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    for array in (base[:, ::2], base.T, np.asfortranarray(base), base[1:3, 2:5]):
        assert encode(array) == msgpack_numpy.packb(array)
        np.testing.assert_array_equal(decode(encode(array)), array)


@pytest.mark.parametrize("value", [
    np.array([object()], dtype=object),
    np.zeros(2, dtype=np.complex64),
    np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
    np.complex128(1 + 2j),
    {"nested": [np.zeros(1, dtype=np.complex128)]},
])
def test_object_complex_and_structured_values_are_refused(value: Any) -> None:
    with pytest.raises(EncodeError):
        encode(value)


def test_unsupported_python_types_are_refused_and_the_encoder_recovers() -> None:
    with pytest.raises(EncodeError, match="set"):
        encode({"x": {1, 2}})
    assert encode({"x": 1}) == msgpack.packb({"x": 1})


def _array_map(dtype: str, shape: list[int], data: bytes) -> bytes:
    return msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}, use_bin_type=True)


@pytest.mark.parametrize("dtype", ["|O8", "O", "<c16", "|V8", "<f4,<i4", "(2,)<f4", "not-a-dtype", "M8[ns],O"])
def test_decoder_refuses_unsafe_or_invalid_dtypes(dtype: str) -> None:
    with pytest.raises(ProtocolError, match="dtype"):
        decode(_array_map(dtype, [1], bytes(8)))


@pytest.mark.parametrize(("shape", "data"), [
    ([4], bytes(8)),             # too few bytes
    ([1], bytes(8)),             # too many bytes
    ([-1], bytes(4)),            # negative dimension
    (["2"], bytes(8)),           # not an int
    ([1] * 40, bytes(4)),        # too many dims
    ([2**40, 2**40], bytes(4)),  # absurd size
])
def test_decoder_checks_shape_against_data(shape: list[Any], data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(_array_map("<f4", shape, data))


def test_decoder_limits_message_and_array_sizes() -> None:
    payload = encode({"a": np.zeros(1000, np.uint8)})
    with pytest.raises(ProtocolError, match="max_message_bytes"):
        decode(payload, DecodeLimits(max_message_bytes=500, max_array_bytes=2**30))
    with pytest.raises(ProtocolError, match="max_array_bytes"):
        decode(payload, DecodeLimits(max_message_bytes=2**30, max_array_bytes=999))
    assert decode(payload, DecodeLimits(max_message_bytes=len(payload), max_array_bytes=1000))["a"].shape == (1000,)


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", b"\x81\x01\x02", b"\xdd\xff\xff\xff\xff", bytes(range(256))])
def test_decoder_refuses_malformed_msgpack(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


def test_incomplete_markers_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="lacks"):
        decode(msgpack.packb({b"__ndarray__": True, b"data": b""}, use_bin_type=True))
    with pytest.raises(ProtocolError, match="lacks"):
        decode(msgpack.packb({b"__npgeneric__": True}, use_bin_type=True))
    with pytest.raises(ProtocolError, match="scalar"):
        decode(msgpack.packb({b"__npgeneric__": True, b"data": [1], b"dtype": "<f4"}, use_bin_type=True))


# ------------------------------------------------------------------------ peer: msgpack_numpy

def test_upstream_decodes_our_droid_observation(openpi_cases: dict[str, GoldenCase],
                                                rebuild_tree: Callable[[Any], Any]) -> None:
    observation = rebuild_tree(openpi_cases["openpi_droid_request"].message)
    assert_strictly_equal(msgpack_numpy.unpackb(encode(observation)), observation)


def test_we_decode_upstream_encodings() -> None:
    value = {
        "actions": np.linspace(-1, 1, 50 * 14, dtype=np.float32).reshape(50, 14),
        "f8": np.float64(0.5), "f4": np.float32(2.5), "i8": np.int64(-7), "b": np.bool_(False),
        "nested": {"u1": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "list": [1, "two", None, b"\x00"]},
        "f16": np.ones(3, np.float16), "empty": np.zeros((0, 8), np.float32),
    }
    assert_strictly_equal(decode(msgpack_numpy.packb(value)), msgpack_numpy.unpackb(msgpack_numpy.packb(value)))


_DTYPES = st.sampled_from(["|u1", "|i1", "<u2", "<i4", "<i8", "<f2", "<f4", "<f8", "|b1", ">f4", ">i2"])


@settings(max_examples=60, deadline=None)
@given(array=_DTYPES.flatmap(lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=4, max_side=5))),
       fortran=st.booleans())
def test_random_arrays_match_upstream_bytes_and_round_trip(array: np.ndarray, fortran: bool) -> None:
    if fortran:
        array = np.asfortranarray(array)
    data = encode({"x": array, "s": array.flat[0] if array.size else None})
    assert data == msgpack_numpy.packb({"x": array, "s": array.flat[0] if array.size else None})
    back = decode(data)["x"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
