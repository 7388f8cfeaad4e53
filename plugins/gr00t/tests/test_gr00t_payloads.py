"""Large array payloads read in place (``arena_adapters_gr00t.payloads``): the decoded value is what
msgpack alone gives, arrays are read-only views of the frame, and hostile frames fail the same way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
from arena_adapters_gr00t import codec, payloads
from arena_adapters_gr00t.codec import CodecError, decode, encode
from arena_adapters_gr00t.modality import ModalityConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arena_adapters.testing.golden import GoldenCase, assert_strictly_equal

DTYPES = ["|u1", "<i2", ">i4", "<f4", ">f8", "|b1", "<c8", "|S3", "<U2"]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
).flatmap(lambda a: st.sampled_from([a, np.asfortranarray(a)]))
keys = st.sampled_from(["data", "as_npy", "x", "__ndarray_class__", "nd"]) | st.text(max_size=8)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12) | st.binary(max_size=40)
trees = st.recursive(scalars | arrays, lambda inner: st.lists(inner, max_size=6)
                     | st.dictionaries(keys, inner, max_size=6), max_leaves=20)


@pytest.fixture
def lift_everything() -> Iterator[None]:
    """Every payload is lifted, however small (the thresholds only keep small messages off the walk)."""
    with mock.patch.object(payloads, "LIFT_MIN_MESSAGE_BYTES", 0), mock.patch.object(payloads, "LIFT_MIN_BIN_BYTES", 0):
        yield


def plain_decode(frame: bytes, **options: Any) -> Any:
    """The decoder with msgpack reading the whole message (no payload lifted)."""
    with mock.patch.object(codec, "lift", lambda data: None):
        return decode(frame, **options)


def outcome(read: Any, frame: bytes, **options: Any) -> Any:
    try:
        return read(frame, **options)
    except CodecError:
        return CodecError


@pytest.mark.usefixtures("lift_everything")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees, form=st.sampled_from(["npy", "nd"]), forms=st.sampled_from([("npy",), ("nd",), ("npy", "nd")]),
       writable=st.booleans())
def test_lifted_decoding_gives_what_msgpack_alone_gives(tree: Any, form: str, forms: tuple[str, ...],
                                                       writable: bool) -> None:
    frame = encode({"payload": tree, "data": b"\x01" * 20, "as_npy": [b"not lifted: in a list"]}, arrays=form)
    expected = outcome(plain_decode, frame, arrays=forms, writable=writable)
    actual = outcome(decode, frame, arrays=forms, writable=writable)
    if expected is CodecError or actual is CodecError:
        assert actual is expected
    else:
        assert_strictly_equal(actual, expected)


@pytest.mark.usefixtures("lift_everything")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_frames_fail_or_decode_as_with_msgpack_alone(golden_cases: dict[str, GoldenCase],
                                                             data: st.DataObject) -> None:
    frames = [case.data for case in golden_cases.values()]
    frames.append(encode({"x": np.arange(24, dtype="<f4").reshape(2, 3, 4), "data": b"ab"}, arrays="nd"))
    frame = bytearray(data.draw(st.sampled_from(frames)))
    for _ in range(data.draw(st.integers(0, 4))):
        if frame:
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    mutated = bytes(frame[:cut] + data.draw(st.binary(max_size=8)) + frame[cut:])
    expected = outcome(plain_decode, mutated)
    actual = outcome(decode, mutated)
    if expected is CodecError or actual is CodecError:
        assert actual is expected
    else:
        assert_strictly_equal(actual, expected)


@pytest.mark.parametrize("form", ["npy", "nd"])
def test_a_camera_batch_decodes_to_read_only_views_of_the_frame(form: str) -> None:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (24, 1, 90, 160, 3), dtype=np.uint8)
    request = {"endpoint": "get_action", "data": {"observation": {
        "video.front": video, "state.joints": rng.random((24, 1, 7), dtype=np.float32),
        "blob": {"data": bytes(range(256)) * 1024}}}}
    frame = bytearray(encode(request, arrays=form))
    assert len(frame) >= payloads.LIFT_MIN_MESSAGE_BYTES
    assert payloads.lift(frame) is not None
    decoded = decode(frame, arrays=(form,))
    observation = decoded["data"]["observation"]
    assert np.shares_memory(observation["video.front"], np.frombuffer(frame, np.uint8))
    assert not observation["video.front"].flags.writeable
    np.testing.assert_array_equal(observation["video.front"], video)
    assert type(observation["blob"]["data"]) is bytes  # a large bin that is no array's stays bytes
    assert_strictly_equal(decoded, plain_decode(bytes(frame), arrays=(form,)))
    writable = decode(frame, arrays=(form,), writable=True)["data"]["observation"]["video.front"]
    assert writable.flags.writeable and not np.shares_memory(writable, np.frombuffer(frame, np.uint8))


def test_messages_the_walk_leaves_to_msgpack() -> None:
    big = {"v": {"__ndarray_class__": True, "as_npy": b"\x00" * (2 * payloads.LIFT_MIN_MESSAGE_BYTES)}}
    frame = encode(big)
    assert payloads.lift(frame) is not None
    assert payloads.lift(frame[:-1]) is None  # truncated
    assert payloads.lift(frame + b"\xc0") is None  # extra data
    assert payloads.lift(b"\xc7\x01\x05x" + frame) is None  # an ext type
    with mock.patch.object(payloads, "MAX_SCANNED_ITEMS", 2):
        assert payloads.lift(frame) is None
    with pytest.raises(CodecError):
        decode(frame[:-1])
    config = ModalityConfig(delta_indices=(0,), modality_keys=("front",))
    assert decode(encode({"video": config, "pad": b"\x00" * payloads.LIFT_MIN_MESSAGE_BYTES}))["video"] == config
