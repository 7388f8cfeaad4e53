"""The json_numpy-compatible codec, checked against the PyPI ``json-numpy`` package in both directions."""

from __future__ import annotations

import json
from typing import Any

import json_numpy
import numpy as np
import pytest
from arena_adapters_openvla import base64_backend, codec
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arena_adapters.errors import ProtocolError
from arena_adapters.testing.golden import assert_strictly_equal
from arena_adapters.transport import DecodeLimits

IMAGE = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)

VALUES: dict[str, Any] = {
    "openvla_request": {"image": IMAGE, "instruction": "pick up the cup", "unnorm_key": "bridge_orig"},
    "oft_request": {
        "full_image": IMAGE[:32, :32],
        "wrist_image": IMAGE[:32, :32].copy(),
        "state": np.arange(8) * 0.25 - 3.0,
        "instruction": "pick up the cup",
    },
    "oft_reply": [np.arange(7, dtype=np.float64) + i for i in range(8)],
    "f4_2x3": np.arange(6, dtype=np.float32).reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided_view": IMAGE[::2, 1::3, :2],
    "big_endian": np.arange(5, dtype=">i4"),
    "bool": np.array([[True, False], [False, True]]),
    "float16": np.linspace(-1, 1, 5, dtype=np.float16),
    "complex": np.array([1 + 2j, -3.5j]),
    "unicode_array": np.array(["ab", "cde"]),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "zero_d": np.array(4.5),
    "scalar_f4": np.float32(1.5),
    "scalar_i8": np.int64(3),
    "scalar_bool": np.bool_(True),
    "np_float64_is_a_float": {"x": np.float64(2.5)},
    "structured": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
    "plain_json": {"s": "é\n\"\\ \u2603", "i": -7, "f": 0.1, "n": None, "t": True, "l": [1, [2, []], {}], "e": ""},
    "special_floats": [float("nan"), float("inf"), float("-inf"), -0.0, 1e300],
    "non_str_keys": {1: "a", 2.5: "b", False: "c", None: "d"},
    "tuple": (1, (2, 3)),
}


@pytest.mark.parametrize("separators", [codec.REQUEST_SEPARATORS, codec.REPLY_SEPARATORS])
@pytest.mark.parametrize("name", sorted(VALUES))
def test_encode_writes_the_bytes_of_json_numpy(name: str, separators: tuple[str, str]) -> None:
    value = VALUES[name]
    assert codec.encode(value, separators=separators) == json_numpy.dumps(value, separators=separators).encode()


REFUSED_ON_DECODE = {"structured"}
"""Values json_numpy writes that our decoder refuses: structured (void) dtypes are off the kit's allow-list."""


@pytest.mark.parametrize("name", sorted(set(VALUES) - REFUSED_ON_DECODE))
def test_decode_reads_json_numpy_text_like_json_numpy(name: str) -> None:
    text = json_numpy.dumps(VALUES[name])
    expected = json_numpy.loads(text)
    assert_strictly_equal(codec.decode(text.encode()), expected)
    assert_strictly_equal(codec.decode(text), expected)


@pytest.mark.parametrize("name", sorted(REFUSED_ON_DECODE))
def test_structured_dtypes_are_refused_when_decoding(name: str) -> None:
    with pytest.raises(ProtocolError, match="dtype must be a short type string"):
        codec.decode(json_numpy.dumps(VALUES[name]).encode())


@pytest.mark.parametrize("name", sorted(VALUES))
def test_json_numpy_reads_what_encode_writes(name: str) -> None:
    body = codec.encode(VALUES[name])
    assert_strictly_equal(json_numpy.loads(body), json_numpy.loads(json_numpy.dumps(VALUES[name])))


def test_binascii_backend_gives_identical_bytes_and_values() -> None:
    payload = VALUES["openvla_request"]
    fast = codec.encode(payload)
    slow = codec.encode(payload, backend=base64_backend.BINASCII)
    assert fast == slow
    assert_strictly_equal(codec.decode(fast, backend=base64_backend.BINASCII), codec.decode(fast))


def test_decoded_arrays_are_read_only_and_c_ordered() -> None:
    decoded = codec.decode(codec.encode({"a": VALUES["fortran"], "image": IMAGE}))
    for array in decoded.values():
        assert not array.flags.writeable
        assert array.flags.c_contiguous
    assert np.array_equal(decoded["a"], VALUES["fortran"])


def test_numpy_scalars_decode_to_numpy_scalars() -> None:
    decoded = codec.decode(codec.encode([np.float32(1.5), np.int64(3), np.array(4.5)]))
    assert [type(item) for item in decoded] == [np.float32, np.int64, np.float64]
    assert decoded == [1.5, 3, 4.5]


def test_double_encoded_request_is_what_requests_sends_with_json_numpy() -> None:
    payload = VALUES["openvla_request"]
    body = codec.encode_double(payload)
    assert body == json.dumps({"encoded": json_numpy.dumps(payload)}).encode()
    outer = codec.decode(body)
    assert list(outer) == ["encoded"] and isinstance(outer["encoded"], str)
    assert_strictly_equal(codec.decode(outer["encoded"]), json_numpy.loads(json_numpy.dumps(payload)))


def test_json_string_of_encoded_text_decodes_twice() -> None:
    inner = codec.encode(VALUES["oft_reply"])
    quoted = codec.encode_json_string(inner)
    assert json.loads(quoted) == inner.decode()
    assert_strictly_equal(codec.decode(codec.decode(quoted)), VALUES["oft_reply"])


@pytest.mark.parametrize("value", [np.array([object(), 1], dtype=object), np.zeros(2, dtype=[("o", object)])])
def test_object_dtypes_are_refused_when_encoding(value: np.ndarray) -> None:
    with pytest.raises(codec.EncodeError, match="object"):
        codec.encode({"x": value})


def test_unknown_types_are_refused_when_encoding() -> None:
    with pytest.raises(codec.EncodeError, match="set"):
        codec.encode({"x": {1, 2}})
    with pytest.raises(codec.EncodeError, match="keys"):
        codec.encode({(1, 2): 3})


@pytest.mark.parametrize(
    "text, match",
    [
        (b"not json", "invalid JSON"),
        (b'{"__numpy__": "AAAA", "dtype": "|O", "shape": [3]}', "'|O' is not allowed"),
        (b'{"__numpy__": "AAAA", "dtype": "<f4", "shape": [3]}', "do not make"),
        (b'{"__numpy__": "A", "dtype": "|u1", "shape": [1]}', "base64"),
        (b'{"__numpy__": "AAAA", "dtype": "nonsense", "shape": [3]}', "unreadable dtype 'nonsense'"),
        (b'{"__numpy__": "AAAA", "dtype": ",f8", "shape": [3]}', "unreadable dtype ',f8'"),
        (b'{"__numpy__": 5, "dtype": "|u1", "shape": [1]}', "base64 str"),
        (b'{"__numpy__": "AAAA", "shape": [3]}', "without 'dtype'"),
        (b"\xff\xfe{", "JSON"),
    ],
)
def test_bad_bodies_raise_protocol_errors(text: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        codec.decode(text)


def test_decode_is_lenient_with_base64_like_json_numpy() -> None:
    text = '{"__numpy__": "AQID\\nBA==", "dtype": "|u1", "shape": [4]}'
    assert_strictly_equal(codec.decode(text), json_numpy.loads(text))


PAD = "x" * (codec._FAST_PATH_MIN_BYTES + 2000)
_ADVERSARIAL = {
    "escaped_key_tail": '{"a\\"__numpy__": "AQID", "pad": "PAD"}',
    "array_text_inside_a_string": '{"s": "{\\"__numpy__\\": \\"AQID\\"}", "pad": "PAD"}',
    "unicode_escaped_key": '{"\\u005f_numpy__": "AQID", "dtype": "|u1", "shape": [3], "pad": "PAD"}',
    "placeholder_lookalike": (
        '[{"\\u005f_numpy__": "#0", "dtype": "|u1", "shape": [1]}, {"__numpy__": "AQID", "dtype": "|u1", '
        '"shape": [3]}, "PAD"]'
    ),
    "escaped_slash_in_base64": '{"__numpy__": "AQID\\/w==", "dtype": "|u1", "shape": [4], "p": "PAD"}',
    "whitespace_around_colon": '{"__numpy__"  :\n "AQID" , "dtype":"|u1","shape":[3],"p":"PAD"}',
    "duplicate_key": '{"__numpy__": "AQID", "__numpy__": "BAUG", "dtype": "|u1", "shape": [3], "p": "PAD"}',
    "key_as_value": '{"k": "__numpy__", "pad": "PAD"}',
    "even_backslashes_before_key": '{"a\\\\": 1, "__numpy__": "AQID", "dtype": "|u1", "shape": [3], "p": "PAD"}',
    "many_arrays": json_numpy.dumps({f"k{i}": np.arange(i, dtype=np.int16) for i in range(60)}),
}
ADVERSARIAL = {name: text.replace("PAD", PAD) for name, text in _ADVERSARIAL.items()}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_large_bodies_decode_exactly_like_json_numpy(name: str) -> None:
    text = ADVERSARIAL[name]
    try:
        expected = json_numpy.loads(text)
    except ValueError:
        with pytest.raises(ProtocolError):
            codec.decode(text.encode())
        return
    assert_strictly_equal(codec.decode(text.encode()), expected)


DTYPES = st.sampled_from(["|u1", "|i1", "<i2", "<u4", "<i8", ">i8", "<f2", "<f4", ">f4", "<f8", "|b1", "<c8"])


@settings(max_examples=60, deadline=None)
@given(
    array=DTYPES.flatmap(
        lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    ),
    fortran=st.booleans(),
    separators=st.sampled_from([codec.REQUEST_SEPARATORS, codec.REPLY_SEPARATORS]),
)
def test_random_arrays_round_trip_with_json_numpy_in_both_directions(
    array: np.ndarray, fortran: bool, separators: tuple[str, str]
) -> None:
    if fortran:
        array = np.asfortranarray(array)
    payload = {"a": array, "pad": "y" * codec._FAST_PATH_MIN_BYTES}
    body = codec.encode(payload, separators=separators)
    assert body == json_numpy.dumps(payload, separators=separators).encode()
    assert_strictly_equal(codec.decode(body), json_numpy.loads(body))
    assert_strictly_equal(json_numpy.loads(codec.encode(payload)), json_numpy.loads(json_numpy.dumps(payload)))


@settings(max_examples=60, deadline=None)
@given(
    arrays=DTYPES.flatmap(lambda dtype: hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5).flatmap(
        lambda shape: st.lists(hnp.arrays(np.dtype(dtype), shape), min_size=0, max_size=5))),
    odd_one=st.sampled_from([None, "scalar", "other dtype", "other shape", "fortran", "text"]),
    as_tuple=st.booleans(),
    separators=st.sampled_from([codec.REQUEST_SEPARATORS, codec.REPLY_SEPARATORS]),
)
def test_lists_of_arrays_encode_exactly_like_json_numpy(
    arrays: list[np.ndarray], odd_one: str | None, as_tuple: bool, separators: tuple[str, str]
) -> None:
    """A chunk sent as a list of actions (one dtype and shape: written with one dtype and shape
    text), and lists that break that by one item."""
    items: list[Any] = list(arrays)
    if odd_one == "scalar":
        items.append(np.float64(1.5))
    elif odd_one == "other dtype" and items:
        items.append(items[0].astype(np.float32 if items[0].dtype != np.float32 else np.float64))
    elif odd_one == "other shape":
        items.append(np.zeros((7,), dtype=items[0].dtype if items else np.float64))
    elif odd_one == "fortran" and items and items[0].ndim == 2:
        items.append(np.asfortranarray(items[0]))
    elif odd_one == "text":
        items.append("action")
    value = tuple(items) if as_tuple else items
    body = codec.encode({"actions": value, "last": value[-1:] if value else value}, separators=separators)
    assert body == json_numpy.dumps({"actions": value, "last": value[-1:] if value else value},
                                    separators=separators).encode()


@pytest.mark.parametrize(
    "name, fast", [("whitespace_around_colon", True), ("many_arrays", True), ("escaped_key_tail", False),
                   ("escaped_slash_in_base64", False), ("placeholder_lookalike", False), ("duplicate_key", False)]
)
def test_the_cut_out_fast_path_is_taken_only_when_it_is_exact(name: str, fast: bool) -> None:
    found = codec._loads_cut(ADVERSARIAL[name].encode(), base64_backend.DEFAULT, codec.DEFAULT_LIMITS)
    assert (found is not None) == fast
    if found is not None:
        assert_strictly_equal(found[0], json_numpy.loads(ADVERSARIAL[name]))


def _plain(text: bytes) -> Any:
    """The plain parse (no fast path), or the ProtocolError it raises."""
    try:
        return codec._parse(text, base64_backend.DEFAULT, codec.DEFAULT_LIMITS, cut=False)
    except (ProtocolError, json.JSONDecodeError) as error:
        return error


@settings(max_examples=80, deadline=None)
@given(
    arrays=DTYPES.flatmap(lambda dtype: hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5).flatmap(
        lambda shape: st.lists(hnp.arrays(np.dtype(dtype), shape), min_size=1, max_size=20))),
    separators=st.sampled_from([codec.REQUEST_SEPARATORS, codec.REPLY_SEPARATORS]),
)
def test_a_list_of_like_arrays_decodes_on_the_fast_path_like_json_numpy(
    arrays: list[np.ndarray], separators: tuple[str, str]
) -> None:
    """The OFT reply: a chunk as a list of actions of one dtype and shape, as either writer writes it."""
    for text in (codec.encode(arrays, separators=separators), json_numpy.dumps(arrays, separators=separators).encode()):
        fast = codec._loads_like_arrays(text, base64_backend.DEFAULT, codec.DEFAULT_LIMITS)
        assert fast is not None
        assert_strictly_equal(fast, json_numpy.loads(text))
        assert_strictly_equal(codec.decode(text), fast)
        assert all(not array.flags.writeable and array.flags.c_contiguous for array in fast)


CHUNK = codec.encode([np.arange(8, dtype=np.float32) + i for i in range(4)], separators=codec.REPLY_SEPARATORS)


@pytest.mark.parametrize(
    "text",
    [
        CHUNK.replace(b'"<f4"', b'"<f8"', 1),  # the first array's dtype differs from the rest
        CHUNK.replace(b"[8]", b"[4]", 1),
        CHUNK[:-1] + b", 1]",  # an item that is no array
        CHUNK.replace(b"},{", b"}, {", 1),  # other spacing in the middle
        CHUNK.replace(b'"dtype"', b'"dtype" ', 1),
        CHUNK.replace(b"A", b"\\u0041", 1),  # an escape inside the base64
        CHUNK.replace(b"A", b"!", 1),  # outside the alphabet: json_numpy drops it
        CHUNK.replace(b"==", b"=", 1),
        CHUNK.replace(b"[8]", b"[08]"),  # not JSON
        CHUNK.replace(b'"<f4"', b'"|O8"'),  # refused dtype
        CHUNK.replace(b"[8]", b"[8, 0]"),
        CHUNK.replace(b"[8]", b"[4]"),  # every array declares half its bytes
        CHUNK.replace(b'"<f4"', b'"<f8"'),
        CHUNK[:-2] + b"}",  # cut short
        CHUNK[:-1] + b"x",
        CHUNK + b" ",
        b"[" + CHUNK + b"]",
        b'[{"__numpy__":"AAAA","dtype":"|u1","shape":[3]},{"__numpy__":"AAAA","dtype":"|u1","shape":[3]}]',
        b'[{"__numpy__":"AAAA","dtype":"|u1","shape":[3]},{"__numpy__":"AAAA",'
        b'"dtype":"|u1","shape":[3]},{"x":"AAAA","dtype":"|u1","shape":[3]}]',
    ],
)
def test_near_misses_of_a_like_array_list_decode_as_the_plain_parse_does(text: bytes) -> None:
    fast = codec._loads_like_arrays(text, base64_backend.DEFAULT, codec.DEFAULT_LIMITS)
    plain = _plain(text)
    if fast is not None:
        assert_strictly_equal(fast, plain)
    try:
        decoded = codec.decode(text)
    except ProtocolError as error:
        assert isinstance(plain, (ProtocolError, json.JSONDecodeError)), error
        return
    assert_strictly_equal(decoded, plain)


def test_a_like_array_list_keeps_within_the_limits() -> None:
    with pytest.raises(ProtocolError, match="max_depth=2"):
        codec.decode(CHUNK, limits=DecodeLimits(max_depth=2))
    with pytest.raises(ProtocolError, match="max_array_bytes=16"):
        codec.decode(CHUNK, limits=DecodeLimits(max_array_bytes=16))
    with pytest.raises(ProtocolError, match="at most 1 ints"):
        codec.decode(CHUNK.replace(b"[8]", b"[2,4]"), limits=DecodeLimits(max_ndim=1))
    assert len(codec.decode(CHUNK, limits=DecodeLimits(max_depth=3, max_array_bytes=32))) == 4


@settings(max_examples=150, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(CHUNK) - 1), edit=st.sampled_from(["drop", "double", "swap"]),
       byte=st.sampled_from(list(b'[]{},: "\\Ax0=9')))
def test_an_edited_like_array_list_never_decodes_other_than_the_plain_parse(position: int, edit: str, byte: int) -> None:
    if edit == "drop":
        text = CHUNK[:position] + CHUNK[position + 1:]
    elif edit == "double":
        text = CHUNK[:position] + CHUNK[position:position + 1] * 2 + CHUNK[position + 1:]
    else:
        text = CHUNK[:position] + bytes([byte]) + CHUNK[position + 1:]
    fast = codec._loads_like_arrays(text, base64_backend.DEFAULT, codec.DEFAULT_LIMITS)
    if fast is not None:
        assert_strictly_equal(fast, _plain(text))


def test_the_default_backend_sends_small_data_to_binascii_and_large_data_to_pybase64() -> None:
    """pybase64 releases the GIL on every call; small data stays with binascii, which does not."""
    calls: list[tuple[str, str, int]] = []

    def recording(name: str) -> base64_backend.Base64Backend:
        real = base64_backend.BINASCII
        return base64_backend.Base64Backend(
            name,
            lambda data: calls.append((name, "encode", len(data))) or real.encode(data),
            lambda data: calls.append((name, "strict", len(data))) or real.decode_strict(data),
            lambda data: calls.append((name, "lenient", len(data))) or real.decode_lenient(data),
        )

    routed = base64_backend.by_size(recording("small"), recording("large"), threshold=100)
    assert routed.encode(b"x" * 99) == base64_backend.BINASCII.encode(b"x" * 99)
    routed.encode(b"x" * 100)
    routed.decode_strict(b"QUJD" * 25)
    routed.decode_lenient(b"QUJD" * 24 + b"!!!")  # json_numpy drops characters outside the alphabet
    assert calls == [("small", "encode", 99), ("large", "encode", 100), ("large", "strict", 100), ("small", "lenient", 99)]
    threshold = base64_backend.GIL_RELEASE_MIN_BYTES
    if base64_backend.PYBASE64 is not None:
        assert base64_backend.DEFAULT.name == f"binascii under {threshold} bytes, else pybase64"
    for size in (0, 1, threshold - 1, threshold, 3 * threshold + 1):
        data = np.random.default_rng(size).bytes(size)
        text = base64_backend.DEFAULT.encode(data)
        assert text == base64_backend.BINASCII.encode(data)
        assert base64_backend.DEFAULT.decode_strict(text) == data == base64_backend.DEFAULT.decode_lenient(text)
