"""Fuzzing the GR00T decoders: the client's reply decoder and the reference server's request decoder.

Seeds are the golden frames recorded from upstream (mutated, truncated, spliced) plus structured
hostile inputs (huge declared sizes, deep nesting, bad dtypes, long headers and integer literals).
Only the project's typed errors may come out (the server always answers), and nothing is allocated
from a declared size before it is checked.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from typing import Any

import msgpack
import numpy as np
import pytest
from arena_adapters_gr00t.codec import CodecError, decode, encode
from arena_adapters_gr00t.modality import MARKER_N16
from arena_adapters_gr00t.npy import to_npy
from arena_adapters_gr00t.server import ReferenceServer
from arena_adapters_gr00t.transport import Gr00tTransport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena_adapters.errors import AdapterError, ProtocolError, ServerError
from arena_adapters.testing.golden import GoldenCase
from arena_adapters.transport import DecodeLimits

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # long seeds' reprs

MiB = 2**20
LIMITS = DecodeLimits(max_message_bytes=4 * MiB, max_array_bytes=1 * MiB, max_depth=16)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def npy_header(text: str, version: int = 1) -> bytes:
    raw = text.encode("latin1") + b"\n"
    length = struct.pack("<H", len(raw)) if version == 1 else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes((version, 0)) + length + raw


def npy_map(payload: bytes) -> bytes:
    return msgpack.packb({"x": {"__ndarray_class__": True, "as_npy": payload}})


def nd_frame(type_name: Any, shape: Any, data: bytes = b"", kind: Any = b"") -> bytes:
    return msgpack.packb({"x": {b"nd": True, b"type": type_name, b"kind": kind, b"shape": shape, b"data": data}})


HUGE = 10**12
HOSTILE: dict[str, bytes] = {
    "npy huge shape": npy_map(npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }")
                              + b"\0" * 64),
    "npy huge 1-d": npy_map(npy_header(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({HUGE},), }}")),
    "npy zero itemsize": npy_map(npy_header(f"{{'descr': '|S0', 'fortran_order': False, 'shape': ({HUGE},), }}")),
    "npy object": npy_map(npy_header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }") + b"\0" * 8),
    "npy structured": npy_map(npy_header("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }")),
    "npy one-bit flip": npy_map(npy_header("{'descr': ',f8', 'fortran_order': False, 'shape': (1,), }") + b"\0" * 8),
    "npy long int": npy_map(npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (" + "9" * 5000 + ",), }")),
    "npy long header": npy_map(npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }"
                                          + " " * 60000, version=2) + b"\0" * 8),
    "npy declared header 4 GB": npy_map(b"\x93NUMPY\x02\x00\xff\xff\xff\xff{"),
    "npy nested parens": npy_map(npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': "
                                            + "(" * 3000 + ")" * 3000 + ", }")),
    "npy eval bait": npy_map(npy_header("{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (), }")),
    "npy truncated length": npy_map(b"\x93NUMPY\x01\x00\x10"),
    "npy short data": npy_map(to_npy(np.arange(100, dtype="<f8"))[:-8]),
    "npy long data": npy_map(to_npy(np.arange(100, dtype="<f8")) + b"\0" * 8),
    "nd huge shape": nd_frame("<f8", [2**40, 2**20]),
    "nd shape past int64": nd_frame("<f8", [0, 2**64 - 1]),
    "nd zero itemsize": nd_frame("|S0", [HUGE]),
    "nd object kind": nd_frame("|O", [1], b"\x80\x04N.", kind=b"O"),
    "nd bad dtype": nd_frame("<q" * 40, [1], b"\0" * 8),
    "nd shape not ints": nd_frame("<f8", ["1"], b"\0" * 8),
    "nd data mismatch": nd_frame("<f8", [4], b"\0" * 8),
    "nd scalar past U+10FFFF": msgpack.packb({"x": {b"nd": False, b"type": "<U1", b"kind": b"",
                                                   b"data": b"\x00\x00\x00\x01"}}),
    "npy text past U+10FFFF": npy_map(npy_header("{'descr': '<U1', 'fortran_order': False, 'shape': (2,), }")
                                      + b"a\0\0\0\x00\x00\x00\x01"),
    "msgpack list of 4G items": b"\xdd\xff\xff\xff\xff",
    "msgpack bin of 4 GB": b"\x81\xa1x\xc6\xff\xff\xff\xff",
    "msgpack deep lists": b"\x91" * 5000 + b"\xc0",
    "msgpack deep maps": b"\x81\xa1k" * 200 + b"\xc0",
    "n1.5 deep json": msgpack.packb({"video": {MARKER_N16: True, "as_json": "[" * 5000 + "]" * 5000}}),
    "n1.5 long int json": msgpack.packb({"video": {MARKER_N16: True, "as_json":
                                                   '{"delta_indices":[' + "7" * 5000 + '],"modality_keys":[]}'}}),
    "n1.5 infinite json": msgpack.packb({"video": {MARKER_N16: True, "as_json":
                                                   '{"delta_indices":[1e999],"modality_keys":[]}'}}),
    "n1.5 nan json": msgpack.packb({"video": {MARKER_N16: True, "as_json":
                                              '{"delta_indices":[NaN],"modality_keys":[]}'}}),
    "modality config not a map": msgpack.packb({"video": {MARKER_N16: True, "as_json": [1, 2]}}),
    "modality config bad fields": msgpack.packb({"video": {MARKER_N16: True, "as_json": {
        "delta_indices": [[1]], "modality_keys": 5}}}),
}


def client_decode(frame: bytes) -> None:
    """The client's whole reply path: the kit's size check, our decoder, the error envelope."""
    transport = CLIENT
    with contextlib.suppress(ProtocolError, ServerError):
        transport.decode_reply(frame, "fuzz")


CLIENT = Gr00tTransport("tcp://127.0.0.1:9", max_message_bytes=LIMITS.max_message_bytes,
                        max_array_bytes=LIMITS.max_array_bytes, max_depth=LIMITS.max_depth)
SERVERS = [ReferenceServer(max_message_bytes=LIMITS.max_message_bytes, max_array_bytes=LIMITS.max_array_bytes,
                           max_depth=LIMITS.max_depth, array_encoding=era) for era in ("npy", "nd")]


def server_answers(frame: bytes) -> None:
    """A server's request path never raises: it answers with a decodable reply."""
    for server in SERVERS:
        reply = server.handle(frame)
        assert isinstance(reply, bytes)
        decode(reply)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_structured_hostile_inputs_are_protocol_errors_without_allocation(name: str) -> None:
    frame = HOSTILE[name]
    tracemalloc.start()
    try:
        with pytest.raises(CodecError):
            decode(frame, limits=LIMITS)
        with pytest.raises(ProtocolError):
            CLIENT.decode_reply(frame, "fuzz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB, f"{name}: {peak:,} bytes allocated"
    server_answers(frame)


@pytest.fixture(scope="module")
def seeds(golden_cases: dict[str, GoldenCase]) -> list[bytes]:
    frames = [case.data for case in golden_cases.values()]
    frames.append(encode({"x": np.arange(24, dtype="<f4").reshape(2, 3, 4)}, arrays="nd"))
    return frames + list(HOSTILE.values())


def mutate(seeds: list[bytes], data: st.DataObject) -> bytes:
    """One seed flipped, truncated, grown or spliced with another."""

    def flip(frame: bytes) -> bytes:
        out = bytearray(frame)
        for _ in range(data.draw(st.integers(1, 8))):
            if not out:
                break
            index = data.draw(st.integers(0, len(out) - 1))
            out[index] = data.draw(st.sampled_from([out[index] ^ (1 << data.draw(st.integers(0, 7))), 0, 0xFF, 0x7F,
                                                    data.draw(st.integers(0, 255))]))
        return bytes(out)

    frame = data.draw(st.sampled_from(seeds), label="seed")
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    if how == "flip":
        return flip(frame)
    cut = data.draw(st.integers(0, len(frame)))
    if how == "truncate":
        return frame[:cut]
    if how == "insert":
        return frame[:cut] + data.draw(st.binary(min_size=1, max_size=16)) + frame[cut:]
    other = data.draw(st.sampled_from(seeds))
    return frame[:cut] + other[data.draw(st.integers(0, len(other))):]


@FUZZ
@given(data=st.data())
def test_mutated_frames_give_only_typed_errors(seeds: list[bytes], data: st.DataObject) -> None:
    frame = mutate(seeds, data)
    client_decode(frame)
    server_answers(frame)


@FUZZ
@given(frame=st.binary(max_size=512))
def test_random_bytes_give_only_typed_errors(frame: bytes) -> None:
    client_decode(frame)
    server_answers(frame)


headers = st.builds(
    lambda descr, fortran, shape, pad: f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}" + pad,
    st.sampled_from(["'<f4'", "'|u1'", "'|O'", "'<V8'", "'<U0'", "'S'", "[('a', '<i4')]", "'<f4", "3", "'" + "x" * 40
                     + "'"]),
    st.sampled_from(["False", "True", "1", "None", "'yes'"]),
    st.lists(st.integers(0, 2**70), max_size=40).map(lambda dims: "(" + ", ".join(map(str, dims)) + ",)")
    | st.text("(),0123456789 -", max_size=60),
    st.text(" \n\t", max_size=20),
)


@FUZZ
@given(text=headers, data=st.binary(max_size=64))
def test_structured_npy_headers_give_only_typed_errors(text: str, data: bytes) -> None:
    frame = npy_map(npy_header(text) + data)
    tracemalloc.start()
    try:
        with contextlib.suppress(CodecError):
            decode(frame, limits=LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB
    server_answers(frame)


nd_maps = st.fixed_dictionaries({
    b"nd": st.sampled_from([True, False, 1, None]),
    b"type": st.sampled_from(["<f4", "|u1", "|O", "<V4", "|S0", "<U1", b"<f8", 3, "f" * 50]),
    b"kind": st.sampled_from([b"", "", b"O", b"V", None]),
    b"shape": st.lists(st.integers(-2, 2**64 - 1), max_size=40) | st.none() | st.text(max_size=3),
    b"data": st.binary(max_size=64) | st.text(max_size=4) | st.none(),
})


@FUZZ
@given(fields=nd_maps)
def test_structured_nd_maps_give_only_typed_errors(fields: dict[bytes, Any]) -> None:
    frame = msgpack.packb({"x": fields})
    with contextlib.suppress(CodecError):
        decode(frame, limits=LIMITS)
    client_decode(frame)
    server_answers(frame)


def test_golden_frames_decode_within_default_limits(golden_cases: dict[str, GoldenCase]) -> None:
    for case in golden_cases.values():
        try:
            CLIENT.decode_reply(case.data, case.name)
        except ServerError as error:  # the recorded error replies
            assert case.name.startswith("gr00t_error_"), error
        except AdapterError as error:
            pytest.fail(f"{case.name}: {error}")
