"""The openpi codec's own msgpack paths against openpi_client.msgpack_numpy: the gathering writer,
the one-pass reader and the skeletons of recurring layouts, on random values and hostile bytes."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import numpy as np
import pytest
from arena_adapters_openpi import codec
from arena_adapters_openpi.codec import DecodeLimits, EncodeError, decode, encode
from arena_adapters_openpi.reader import ARRAY_PREFIX
from arena_adapters_openpi.wire import GATHER_ARRAY_BYTES, MAX_GATHER_DEPTH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from openpi_client import msgpack_numpy

from arena_adapters.errors import ProtocolError
from arena_adapters.testing.golden import GoldenCase, assert_strictly_equal

_SMALL_DTYPES = ["|u1", "|i1", "<u2", ">i2", "<i4", "<i8", "<u8", "<f2", "<f4", ">f4", "<f8", "|b1", "<U3", "|S2",
                 "<M8[s]", "<m8[ms]"]
_LARGE_DTYPES = ["|u1", "<f4", ">f8", "<i2", "|b1"]


def _large_array(size: int, dtype: str, fortran: bool, offset: int) -> np.ndarray:
    array = (np.arange(size) % 251).astype(dtype)
    if offset:  # a view that does not start at its base: arrays are not all fresh allocations
        array = np.concatenate([array[:offset], array])[offset:]
    array = array.reshape(-1, 8) if size % 8 == 0 else array
    return np.asfortranarray(array) if fortran else array


_small_arrays = st.sampled_from(_SMALL_DTYPES).flatmap(
    lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
)
_large_arrays = st.builds(
    _large_array,
    size=st.integers(GATHER_ARRAY_BYTES, GATHER_ARRAY_BYTES + 600).map(lambda n: n - n % 8),
    dtype=st.sampled_from(_LARGE_DTYPES), fortran=st.booleans(), offset=st.integers(0, 3),
)
_numpy_scalars = st.builds(lambda d, n: np.dtype(d).type(n), st.sampled_from(["<f4", "<i8", "|u1", "|b1", "<f8"]),
                           st.integers(0, 100))
_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=20),
    st.binary(max_size=20), _numpy_scalars, _small_arrays, _large_arrays,
)
_values = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=4)), children, max_size=4),
    ),
    max_leaves=10,
)
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_views(data: bytes, limits: DecodeLimits = codec.DEFAULT_LIMITS) -> Any:
    """The one-pass reader's value, whatever the size and history of the message."""
    return codec._read_views(data, limits)[0]


def _decode_thrice(data: bytes) -> Any:
    """Decode ``data`` until its layout has a skeleton (or is known to have none)."""
    for _ in range(3):
        value = decode(data)
    return value


def _arrays_in(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [array for item in value for array in _arrays_in(item)]
    return []


@QUICK
@given(value=_values)
def test_random_values_match_upstream_bytes_and_decode_like_upstream(value: Any) -> None:
    data = encode(value)
    assert data == msgpack_numpy.packb(value)
    expected = msgpack_numpy.unpackb(data)
    # read once, read again leaving a skeleton, built from the skeleton; and the one-pass reader
    for decoded in (decode(data), decode(data), decode(data), _read_views(data)):
        assert_strictly_equal(decoded, expected)
        for array in _arrays_in(decoded):
            assert not array.flags.writeable
            assert array.flags.aligned


def _observation() -> dict[str, Any]:
    return {
        "image": (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3),
        "x": np.linspace(0, 1, 7),
        "nested": {"odd": np.arange(5, dtype="<f8"), "t": 1.5, "list": [2.5, "s", np.arange(3, dtype=np.float32)]},
        "prompt": "pick up the cup",
        "f32": np.float32(0.25),
    }


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_messages_of_a_known_layout_decode_like_upstream_whatever_bytes_change(data: st.DataObject) -> None:
    message = bytearray(encode(_observation()))
    _decode_thrice(bytes(message))  # leaves the skeleton of this layout
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(message) - 1))
        message[position] = data.draw(st.integers(0, 255))
    mutated = bytes(message)
    try:
        ours = decode(mutated)
    except ProtocolError:
        return  # stricter than upstream (dtype allow-list, exact data sizes, limits) or not msgpack
    assert_strictly_equal(ours, msgpack_numpy.unpackb(mutated))


def test_a_skeleton_fills_in_new_array_data_and_floats() -> None:
    first, second = _observation(), _observation()
    second["image"] = second["image"][::-1].copy()
    second["x"] = second["x"] + 1
    second["nested"]["t"] = -7.25
    second["nested"]["list"][0] = float("nan")
    one, two = encode(first), encode(second)
    assert len(one) == len(two)
    assert_strictly_equal(_decode_thrice(one), msgpack_numpy.unpackb(one))
    assert codec._SKELETONS[len(one)] is not None
    assert_strictly_equal(decode(two), msgpack_numpy.unpackb(two))


def test_skeleton_values_are_fresh_containers() -> None:
    data = encode(_observation())
    first = _decode_thrice(data)
    first["nested"]["list"].append("mine")
    first["extra"] = 1
    second = decode(data)
    assert "extra" not in second and len(second["nested"]["list"]) == 3
    assert second["nested"] is not first["nested"]


@pytest.mark.parametrize("limits", [
    DecodeLimits(max_array_bytes=1000),
    DecodeLimits(max_depth=2),
    DecodeLimits(max_ndim=2),
])
def test_a_skeleton_never_bypasses_tighter_limits(limits: DecodeLimits) -> None:
    data = encode(_observation())
    _decode_thrice(data)
    assert codec._SKELETONS[len(data)] is not None
    with pytest.raises(ProtocolError, match="max_array_bytes|max_depth|at most 2 ints"):
        decode(data, limits)


def test_arrays_at_unaligned_offsets_come_back_aligned() -> None:
    for key in ("a", "ab", "abc", "abcd"):
        value = {key: np.arange(600, dtype="<f8"), "b": np.arange(3, dtype="<i4")}
        data = encode(value)
        for decoded in (decode(data), decode(data), decode(data), _read_views(data)):
            assert decoded[key].flags.aligned and decoded["b"].flags.aligned
            np.testing.assert_array_equal(decoded[key], value[key])


def test_arrays_are_views_of_a_large_bytes_message_and_copies_of_anything_else() -> None:
    data = encode({"image": np.zeros(codec.SMALL_MESSAGE_BYTES, np.uint8)})
    assert decode(data)["image"].base is data
    buffer = bytearray(data)
    array = decode(buffer)["image"]
    buffer[-100] = 7  # the caller's buffer changes; the decoded array must not
    assert not array.flags.writeable and array.max() == 0


# ----------------------------------------------------------------------------------- writer

def test_large_arrays_deep_in_lists_and_tuples_are_gathered_like_upstream() -> None:
    image = (np.arange(GATHER_ARRAY_BYTES * 2) % 251).astype(np.uint8)
    value: Any = {"a": [1, (image, {"b": image[::2]})], "c": "x"}
    for _ in range(MAX_GATHER_DEPTH + 2):
        assert encode(value) == msgpack_numpy.packb(value)
        value = [value, image.reshape(-1, 4).T]


def test_a_refused_large_array_is_an_encode_error_and_the_encoder_recovers() -> None:
    with pytest.raises(EncodeError, match="complex"):
        encode({"ok": np.zeros(GATHER_ARRAY_BYTES, np.uint8), "bad": np.zeros(GATHER_ARRAY_BYTES, np.complex64)})
    value = {"ok": np.zeros(GATHER_ARRAY_BYTES, np.uint8)}
    assert encode(value) == msgpack_numpy.packb(value)


# ---------------------------------------------------------------------------------- hostile

def _droid_request(openpi_cases: dict[str, GoldenCase]) -> bytes:
    return openpi_cases["openpi_droid_request"].data


def test_every_truncation_of_the_droid_request_is_a_protocol_error(openpi_cases: dict[str, GoldenCase]) -> None:
    data = _droid_request(openpi_cases)
    decode(data)
    starts = [data.find(ARRAY_PREFIX, i) for i in range(0, len(data), 40_000)]
    cuts = {*range(0, 200), *(s + d for s in starts if s >= 0 for d in range(0, 60)), *range(len(data) - 200, len(data))}
    for cut in sorted(cuts):
        with pytest.raises(ProtocolError):
            decode(data[:cut])


_HUGE = [
    ARRAY_PREFIX + b"\xc6\xff\xff\xff\xff" + bytes(64),              # array data declaring 4 GiB
    ARRAY_PREFIX + b"\xc5\x00\x10" + bytes(16) + b"\xc4\x05dtype\xa3<f4\xc4\x05shape\x91\xcf" + b"\xff" * 8,
    ARRAY_PREFIX + b"\xc4\x04" + bytes(4) + b"\xc4\x05dtype\xa3<f4\xc4\x05shape\x92\xce\xff\xff\xff\xff\xce\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff" + b"\xa1a\x00" * 4,                       # map32 declaring 2**32 entries
    b"\xdd\x7f\xff\xff\xff\x00",                                      # array32 declaring 2**31 items
    b"\xdb\x7f\xff\xff\xff" + b"a" * 8,                               # str32 declaring 2 GiB
    b"\x81\xc6\x7f\xff\xff\xff" + b"k" * 8,                           # a bin key declaring 2 GiB
    b"\x91" * 5000 + b"\x00",                                         # lists 5000 deep
    b"\x81\xa1k" * 5000 + b"\x00",                                    # maps 5000 deep
    b"\xc7\xff\x05" + bytes(4),                                       # ext8 declaring 255 bytes
    b"\xd4\x80\x00",                                                  # ext code -128 (msgpack refuses it)
    b"\x81\x01\x02",                                                  # an int key
    b"\x81\x91\x01\x02",                                              # a list key
    b"\x81\xa2\xff\xfe\x01",                                          # a key that is not UTF-8
    b"\x91\xa2\xc3\x28",                                              # a str that is not UTF-8
    b"\x80\x00",                                                      # extra data after the value
    b"\xc1",                                                          # reserved byte
    msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "|u1", b"shape": [2**32, 2**32, 0]}),
    msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [2**63, 2**63, 0]}),
]


@pytest.mark.parametrize("data", _HUGE, ids=range(len(_HUGE)))
def test_hostile_bytes_are_protocol_errors_without_allocating(data: bytes) -> None:
    limits = DecodeLimits(max_depth=100)
    for padded in (data, data + bytes(codec.SMALL_MESSAGE_BYTES)):
        for reader in (decode, decode, _read_views):
            tracemalloc.start()
            try:
                with pytest.raises(ProtocolError):
                    reader(padded, limits)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 4 * len(padded) + 2**20


def test_depth_beyond_what_python_can_recurse_is_a_protocol_error() -> None:
    codec.forget_layouts()
    for _ in range(2):  # the first message of its length is read by msgpack, the second by the reader
        with pytest.raises(ProtocolError, match="nests too deep"):
            decode(b"\x91" * 5000 + b"\x00", DecodeLimits(max_depth=100_000))
    with pytest.raises(ProtocolError, match="nests too deep"):
        _read_views(b"\x91" * 5000 + b"\x00", DecodeLimits(max_depth=100_000))


def test_ext_types_decode_as_msgpack_does() -> None:
    value = [msgpack.ExtType(5, b"abc"), msgpack.Timestamp(3, 7)]
    data = msgpack.packb(value)
    assert decode(data) == _read_views(data) == msgpack.unpackb(data)


def test_a_skeleton_counts_depth_as_the_reader_does() -> None:
    data = encode({"a": {"b": np.float32(1.5), "x": np.zeros(3)}, "t": 0.5})  # the scalar's map is 3 deep
    _decode_thrice(data)
    assert codec._SKELETONS[len(data)] is not None
    with pytest.raises(ProtocolError, match="max_depth=2"):
        _read_views(data, DecodeLimits(max_depth=2))
    with pytest.raises(ProtocolError, match="max_depth=2"):
        decode(data, DecodeLimits(max_depth=2))
