"""The codec against msgpack + np.save/np.load (the upstream way), and the other GR00T wire forms."""

from __future__ import annotations

import io
import json
from typing import Any
from unittest import mock

import msgpack
import numpy as np
import pytest
from arena_adapters_gr00t import codec
from arena_adapters_gr00t.codec import FRAME_BUFFER_BYTES, CodecError, decode, encode, encode_frame
from arena_adapters_gr00t.modality import MARKER_N16, MARKER_N17, ActionConfig, ModalityConfig
from arena_adapters_gr00t.npy import NpyError, from_npy, to_npy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arena_adapters.testing.golden import assert_strictly_equal


def np_save_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def upstream_way(value: Any) -> bytes:
    """What upstream's MsgSerializer.to_bytes does: msgpack with np.save for arrays."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return {"__ndarray_class__": True, "as_npy": np_save_bytes(obj)}
        return obj

    return msgpack.packb(value, default=default)


DTYPES = ["|u1", "|i1", "<i2", ">i2", "<u4", "<i8", "<f2", "<f4", ">f4", "<f8", "|b1", "<c8", "<M8[s]", "|S3",
          "<U2"]

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
).flatmap(lambda a: st.sampled_from([a, np.asfortranarray(a), a[..., ::2] if a.ndim else a, a.T]))

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=300)
           | st.text(min_size=28, max_size=300))
trees = st.recursive(
    scalars | arrays,
    lambda inner: st.lists(inner, max_size=20) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=20), inner, max_size=20),
    max_leaves=30,
)


@settings(max_examples=120, deadline=None)
@given(trees)
def test_encode_is_byte_identical_to_the_upstream_way(value: Any) -> None:
    assert encode(value) == upstream_way(value)


@settings(max_examples=60, deadline=None)
@given(trees)
def test_frames_assembled_in_one_buffer_have_the_upstream_bytes(value: Any) -> None:
    with mock.patch.object(codec, "FRAME_BUFFER_BYTES", 0):
        frame = encode_frame(value)
    assert isinstance(frame, memoryview) and frame.readonly
    assert bytes(frame) == upstream_way(value)


@pytest.mark.parametrize("arrays", ["npy", "nd"])
def test_a_camera_batch_frame_is_one_buffer_with_the_bytes_of_encode(arrays: str) -> None:
    rng = np.random.default_rng(0)
    request = {"endpoint": "get_action", "data": {"observation": {
        "video.exterior_image_1_left": rng.integers(0, 256, (12, 1, 180, 320, 3), dtype=np.uint8),
        "state.joint_position": rng.random((12, 1, 7), dtype=np.float32),
        "state.fortran": np.asfortranarray(rng.random((40, 30))),
        "annotation.language.language_instruction": ["reach"] * 12}}}
    frame = encode_frame(request, arrays=arrays)
    assert isinstance(frame, memoryview) and len(frame) >= FRAME_BUFFER_BYTES
    assert bytes(frame) == encode(request, arrays=arrays)
    if arrays == "npy":
        assert bytes(frame) == upstream_way(request)
    assert type(encode_frame({"x": np.zeros(3)}, arrays=arrays)) is bytes  # small frames: plain bytes


@settings(max_examples=100, deadline=None)
@given(arrays)
def test_npy_matches_np_save_and_np_load(array: np.ndarray) -> None:
    payload = to_npy(array)
    assert payload == np_save_bytes(array)
    expected = np.load(io.BytesIO(payload), allow_pickle=False)
    for writable in (False, True):
        decoded = from_npy(payload, writable=writable)
        assert_strictly_equal(decoded, expected)
        assert decoded.flags.writeable == writable or decoded.size == 0


@pytest.mark.parametrize("size", [0, 15, 16, 65535, 65536])
def test_container_and_length_boundaries(size: int) -> None:
    value = {"list": list(range(size)), "map": {str(i): i for i in range(min(size, 70000))},
             "bin": b"x" * size, "str": "y" * size}
    assert encode(value) == msgpack.packb(value)


def test_ints_at_every_width_boundary() -> None:
    edges = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
             -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
    assert encode(edges) == msgpack.packb(edges)
    with pytest.raises(OverflowError):
        encode(2**64)


def test_unsupported_types_are_refused_like_upstream() -> None:
    for value in (np.float32(1.0), np.int64(3), object()):
        with pytest.raises(TypeError):
            encode({"x": value})
    with pytest.raises(TypeError):
        upstream_way({"x": np.float32(1.0)})


def test_object_arrays_are_never_encoded_or_decoded() -> None:
    with pytest.raises(CodecError, match="pickle"):
        encode(np.array([{"a": 1}], dtype=object))
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (64 - 10 - len(header) - 1) + b"\n"
    payload = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 8
    with pytest.raises(CodecError, match=r"dtype .\|O. is not allowed"):
        decode(msgpack.packb({"__ndarray_class__": True, "as_npy": payload}))
    pickled = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"\x80\x04N."}
    with pytest.raises(CodecError, match="kind"):
        decode(msgpack.packb(pickled))


@pytest.mark.parametrize("payload", [b"", b"not npy at all", to_npy(np.arange(10, dtype="<f4"))[:-4]])
def test_malformed_npy_is_a_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode(msgpack.packb({"__ndarray_class__": True, "as_npy": payload}))
    with pytest.raises(NpyError):
        from_npy(payload)


def test_undecodable_bytes_are_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode(b"\xc1\xc1")
    with pytest.raises(CodecError):
        decode(msgpack.packb({"__ndarray_class__": True}))


def msgpack_numpy_form(array: np.ndarray) -> dict[bytes, Any]:
    """An N1.7-era array, as the PyPI msgpack-numpy packer writes it (bin keys)."""
    return {b"nd": True, b"type": array.dtype.str, b"kind": b"", b"shape": list(array.shape),
            b"data": array.tobytes()}


def test_n17_msgpack_numpy_arrays_decode() -> None:
    action = np.arange(32 * 7, dtype=np.float32).reshape(1, 32, 7) / 7
    image = (np.arange(2 * 4 * 3) % 251).astype(np.uint8).reshape(1, 2, 4, 3)
    frame = msgpack.packb([{"action.joint_position": msgpack_numpy_form(action),
                            "image": msgpack_numpy_form(image),
                            "scalar": {b"nd": False, b"type": "<f8", b"kind": b"", b"data": np.float64(2.5).tobytes()}},
                           {}])
    decoded = decode(frame)
    assert_strictly_equal(decoded[0]["action.joint_position"], action)
    assert_strictly_equal(decoded[0]["image"], image)
    assert decoded[0]["scalar"] == 2.5
    assert decode(frame, writable=True)[0]["image"].flags.writeable


DROID_ACTION_FIELDS = {
    "delta_indices": [0, 1, 2], "modality_keys": ["joint_position", "gripper_position"],
    "sin_cos_embedding_keys": None, "mean_std_embedding_keys": None,
    "action_configs": [{"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None},
                       {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None}],
}
EXPECTED_ACTION_CONFIG = ModalityConfig(
    (0, 1, 2), ("joint_position", "gripper_position"),
    action_configs=(ActionConfig("RELATIVE", "NON_EEF", "DEFAULT"), ActionConfig("ABSOLUTE", "NON_EEF", "DEFAULT")),
)


@pytest.mark.parametrize("marker", [MARKER_N16, MARKER_N17])
@pytest.mark.parametrize("payload_key", ["as_json", "as_dict"])
@pytest.mark.parametrize("bin_keys", [False, True])
def test_modality_config_markers_and_payloads(marker: str, payload_key: str, bin_keys: bool) -> None:
    wire: dict[Any, Any] = {marker: True, payload_key: DROID_ACTION_FIELDS}
    if bin_keys:
        wire = {key.encode(): value for key, value in wire.items()}
    frame = msgpack.packb({"action": wire})
    config = decode(frame)["action"]
    assert config == EXPECTED_ACTION_CONFIG
    assert config.horizon == 3
    if not bin_keys:
        assert encode({"action": config}) == frame  # written back in the form it came in


def test_n15_modality_config_json_string() -> None:
    text = json.dumps({"delta_indices": [0], "modality_keys": ["video.ego_view"]}, separators=(",", ":"))
    frame = msgpack.packb({"video": {MARKER_N16: True, "as_json": text}})
    config = decode(frame)["video"]
    assert config.modality_keys == ("video.ego_view",)
    assert config.short_keys("video") == ("ego_view",)
    assert config.form.json_string
    assert encode({"video": config}) == frame


def test_modality_config_keeps_unknown_fields() -> None:
    fields = {**DROID_ACTION_FIELDS, "new_field": [1, 2]}
    frame = msgpack.packb({"action": {MARKER_N17: True, "as_json": fields}})
    config = decode(frame)["action"]
    assert config.extra == (("new_field", [1, 2]),)
    assert encode({"action": config}) == frame


def test_malformed_modality_config_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="ModalityConfig"):
        decode(msgpack.packb({MARKER_N16: True, "as_json": {"modality_keys": ["x"]}}))


def test_decoded_arrays_are_read_only_views_by_default() -> None:
    frame = encode({"x": np.arange(4096, dtype=np.float32)})
    assert not decode(frame)["x"].flags.writeable
    writable = decode(frame, writable=True)["x"]
    writable[0] = 7.0
    assert writable[0] == 7.0
