"""The vla-eval codec: round trips, the wire form vla-eval's own code reads, and hostile input."""

from __future__ import annotations

import io
import tracemalloc

import msgpack
import numpy as np
import pytest
from arena_adapters_vlaeval import codec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from arena_adapters import plugin as ap

LIMITS = ap.DecodeLimits(max_message_bytes=2**20, max_array_bytes=2**20, max_depth=16)


def observation_message(seq: int = 3) -> codec.Message:
    return codec.Message(codec.OBSERVATION, {
        "images": {"exterior_image_1_left": np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)},
        "state": np.linspace(0, 1, 8, dtype=np.float32),
        "task_description": "pick up the cup",
    }, seq, 1.5)


def action_message(seq: int = 3) -> bytes:
    actions = np.arange(16 * 8, dtype=np.float32).reshape(16, 8)
    return codec.pack(codec.Message(codec.ACTION, {"actions": actions}, seq, 2.0))


@pytest.mark.parametrize("image_format", ["raw", "png"])
def test_round_trip_keeps_types_values_seq_and_timestamp(image_format: codec.ImageFormat) -> None:
    message = observation_message()
    back = codec.unpack(codec.pack(message, image_format), LIMITS)
    assert (back.type, back.seq, back.timestamp) == (codec.OBSERVATION, 3, 1.5)
    image = back.payload["images"]["exterior_image_1_left"]
    assert image.dtype == np.uint8 and np.array_equal(image, message.payload["images"]["exterior_image_1_left"])
    assert back.payload["state"].dtype == np.float32 and np.array_equal(back.payload["state"],
                                                                       message.payload["state"])
    assert back.payload["task_description"] == "pick up the cup"


def test_wire_form_is_the_protocols_maps() -> None:
    raw = msgpack.unpackb(codec.pack(observation_message(), "png"), raw=False)
    assert list(raw) == ["type", "payload", "seq", "timestamp"]
    state = raw["payload"]["state"]
    assert state == {"__ndarray__": True, "data": np.linspace(0, 1, 8, dtype=np.float32).tobytes(),
                     "dtype": "<f4", "shape": [8]}
    image = raw["payload"]["images"]["exterior_image_1_left"]
    assert image["__image__"] is True and image["format"] == "png" and image["shape"] == [4, 6, 3]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image["data"]))),
                          observation_message().payload["images"]["exterior_image_1_left"])


def test_non_contiguous_arrays_travel_in_c_order() -> None:
    array = np.arange(12, dtype=np.int16).reshape(3, 4).T
    back = codec.unpack(codec.pack(codec.Message(codec.ACTION, {"actions": array})), LIMITS)
    assert np.array_equal(back.payload["actions"], array)


def test_object_and_string_arrays_are_refused_on_encode() -> None:
    with pytest.raises(ap.ProtocolError, match="bool/int/uint/float"):
        codec.pack(codec.Message(codec.OBSERVATION, {"x": np.array(["a"])}))


@pytest.mark.parametrize(("wire", "match"), [
    ({"type": "action", "payload": {}, "seq": 1}, "lacks"),
    ({"type": "teleport", "payload": {}, "seq": 1, "timestamp": 0.0}, "unknown vla-eval message type"),
    ({"type": "action", "payload": [], "seq": 1, "timestamp": 0.0}, "payload must be a map"),
    ({"type": "action", "payload": {}, "seq": "1", "timestamp": 0.0}, "seq must be an int"),
    ({"type": "action", "payload": {"a": {"__ndarray__": True, "data": b"\0" * 8, "dtype": "|O", "shape": [1]}},
      "seq": 1, "timestamp": 0.0}, "dtype"),
    ({"type": "action", "payload": {"a": {"__ndarray__": True, "data": b"\0" * 8, "dtype": "<c8", "shape": [1]}},
      "seq": 1, "timestamp": 0.0}, "not allowed"),
    ({"type": "action", "payload": {"a": {"__ndarray__": True, "data": b"\0" * 7, "dtype": "<f4", "shape": [2]}},
      "seq": 1, "timestamp": 0.0}, "needs 8 bytes, 7 came"),
    ({"type": "action", "payload": {"a": {"__ndarray__": True, "data": b"", "dtype": "<f4",
                                          "shape": [2**40, 2**40]}}, "seq": 1, "timestamp": 0.0}, "max_array_bytes"),
    ({"type": "action", "payload": {"a": {"__image__": True, "format": "gif", "data": b""}},
      "seq": 1, "timestamp": 0.0}, "image format"),
])
def test_malformed_messages_are_protocol_errors_naming_the_problem(wire: dict, match: str) -> None:
    with pytest.raises(ap.ProtocolError, match=match):
        codec.unpack(msgpack.packb(wire, use_bin_type=True), LIMITS)


def test_deep_nesting_is_refused() -> None:
    nested: object = {}
    for _ in range(40):
        nested = {"a": nested}
    data = msgpack.packb({"type": "action", "payload": nested, "seq": 1, "timestamp": 0.0})
    with pytest.raises(ap.ProtocolError, match="max_depth"):
        codec.unpack(data, LIMITS)


def test_a_png_declaring_a_small_shape_but_holding_a_large_image_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(buffer, format="PNG")
    wire = {"type": "observation", "payload": {"i": {"__image__": True, "format": "png", "data": buffer.getvalue(),
                                                     "shape": [4, 4, 3]}}, "seq": 1, "timestamp": 0.0}
    tracemalloc.start()
    try:
        with pytest.raises(ap.ProtocolError, match="declared"):
            codec.unpack(msgpack.packb(wire, use_bin_type=True), ap.DecodeLimits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"decoding allocated {peak:,} bytes before refusing"


def test_huge_declared_msgpack_lengths_allocate_nothing() -> None:
    # a bin32 declaring 4 GiB, an array32 declaring 2**32-1 items, a str32 declaring 4 GiB: 5-byte messages
    tracemalloc.start()
    try:
        for data in (b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                     b"\xdf\xff\xff\xff\xff"):
            with pytest.raises(ap.ProtocolError):
                codec.unpack(data, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_a_message_over_max_message_bytes_is_refused() -> None:
    with pytest.raises(ap.ProtocolError, match="max_message_bytes"):
        codec.unpack(b"\0" * (LIMITS.max_message_bytes + 1), LIMITS)


SEEDS = [action_message(), codec.pack(observation_message()), codec.pack(observation_message(), "png"),
         codec.pack(codec.Message(codec.HELLO, {"model_server": "X", "action_spec": {"a": {"dims": 7}}}, 1))]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "huge", "cut", "dup"]))
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "huge":
            data[position:position + 5] = b"\xdb\xff\xff\xff\x7f"
        elif kind == "cut":
            del data[position:]
            if not data:
                break
        else:
            data[position:position] = data[position:position + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), st.binary(max_size=256)))
def test_hostile_bytes_give_only_protocol_errors(data: bytes) -> None:
    try:
        message = codec.unpack(data, LIMITS)
    except ap.ProtocolError:
        return
    assert message.type in codec.MESSAGE_TYPES and isinstance(message.payload, dict)
