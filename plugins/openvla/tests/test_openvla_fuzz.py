"""Fuzzing every decoder of the plugin: the client's reply decoder (plain and double-encoded), the
server's request decoder, and the HTTP reply framing. Seeded with the golden cases and with
structured hostile inputs; only the project's typed errors may come out, and nothing is allocated
from a size a peer declares before that size is checked."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from arena_adapters_openvla import codec
from arena_adapters_openvla.transport import HttpTransport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena_adapters.errors import ProtocolError, ServerError, TransportError
from arena_adapters.testing.golden import find_golden_dir, load_cases
from arena_adapters.transport import DecodeLimits

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVER_LIMITS = DecodeLimits(max_message_bytes=256 * 2**20)


def _seeds() -> list[bytes]:
    """The golden request and reply bodies (the ``golden_dir`` fixture's cases: strategies are built
    at import, before fixtures exist); without the vectors, bodies our encoder writes stand in."""
    directory = find_golden_dir(__file__)
    if directory is not None and (directory / "cases.json").is_file():
        return [case.data for case in load_cases(directory, "openvla")]
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    return [codec.encode({"image": image, "instruction": "go", "unnorm_key": "bridge_orig"}),
            codec.encode([np.arange(7.0) + i for i in range(3)], separators=codec.REPLY_SEPARATORS),
            codec.encode_double({"image": image, "instruction": "go"}), b'"error"']


GOLDEN = _seeds()


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """A golden body with byte flips, cuts, insertions or a truncation."""
    data = bytearray(draw(st.sampled_from(GOLDEN)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "set"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[at:]
        elif data:
            data[at] = draw(st.sampled_from(b'"[]{},:0123456789.-eE\\ntfu'))
    return bytes(data)


HOSTILE_DTYPES: list[Any] = [
    "|O", "O8", "V8", "|V0", ",f8", "<f8,<i4", "S0", "U0", "<M8[as]", "f" * 40, "<f8" * 12, "(2,)f8", "i4,i4",
    1, None, ["<f8"], [["a", "<f8"]], {"x": 1}, "\u00e9", "b1", "<U4", "<c16",
]


@st.composite
def hostile_arrays(draw: st.DrawFn) -> bytes:
    """json_numpy array objects with hostile dtypes, shapes and data lengths."""
    dtype = draw(st.sampled_from(HOSTILE_DTYPES))
    shape = draw(st.one_of(
        st.lists(st.integers(-3, 8), max_size=4),
        st.lists(st.integers(0, 2**62), min_size=1, max_size=3),
        st.just([2**40, 2**40]),
        st.lists(st.just(1), min_size=30, max_size=40),
        st.sampled_from([5, "3", [1.5], [True], None, [[2]]]),
    ))
    data = base64.b64encode(draw(st.binary(max_size=64))).decode()
    value: dict[str, Any] = {"__numpy__": data, "dtype": dtype, "shape": shape}
    if draw(st.booleans()):
        del value[draw(st.sampled_from(["dtype", "shape"]))]
    text = json.dumps(value).encode()
    padded = b'{"a": ' + text + b', "pad": "' + b"x" * codec._FAST_PATH_MIN_BYTES + b'"}'  # the cut-out path
    return draw(st.sampled_from([text, b"[" + text + b"]", padded]))


@st.composite
def hostile_structures(draw: st.DrawFn) -> bytes:
    """Deep nesting, long integer literals, long strings, odd encodings."""
    kind = draw(st.sampled_from(["deep_list", "deep_object", "long_int", "long_negative", "deep_in_string",
                                 "many_brackets", "utf16", "nan"]))
    n = draw(st.integers(60, 20_000))
    if kind == "deep_list":
        return b"[" * n + b"]" * draw(st.sampled_from([0, n]))
    if kind == "deep_object":
        return b'{"a":' * n + b"1" + b"}" * n
    if kind == "long_int":
        return b'{"shape": [' + b"7" * n + b"]}"
    if kind == "long_negative":
        return b"-" + b"9" * n
    if kind == "deep_in_string":
        return b'["' + b"[" * n + b'"]'
    if kind == "many_brackets":
        return b"[" + b"[]," * n + b"[]]"
    if kind == "utf16":
        return '{"a": 1}'.encode("utf-16")
    return b"[NaN, Infinity, -Infinity]"


ANY_INPUT = st.one_of(mutations(), hostile_arrays(), hostile_structures(), st.binary(max_size=4096))


@FUZZ
@given(data=ANY_INPUT)
def test_the_reply_decoder_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        codec.decode(data)


@pytest.fixture(scope="module")
def transports() -> Iterator[tuple[HttpTransport, HttpTransport]]:
    plain, encoded = HttpTransport("http://127.0.0.1:9"), HttpTransport("http://127.0.0.1:9", encoded=True)
    yield plain, encoded
    plain.close()
    encoded.close()


@FUZZ
@given(data=ANY_INPUT, double=st.booleans())
def test_the_transports_reply_decoding_raises_only_typed_errors(
    transports: tuple[HttpTransport, HttpTransport], data: bytes, double: bool
) -> None:
    transport = transports[1] if double else transports[0]
    if double:  # the encoded form's reply: a JSON string holding the json_numpy text
        data = codec.encode_json_string(data.decode("latin-1").encode("ascii", "backslashreplace"))
    with contextlib.suppress(ProtocolError, ServerError):
        transport.decode_reply(data)


@FUZZ
@given(data=ANY_INPUT)
def test_the_server_request_decoder_raises_only_json_or_protocol_errors(data: bytes) -> None:
    """``json.JSONDecodeError`` becomes FastAPI's 422, a ProtocolError its 400."""
    with contextlib.suppress(json.JSONDecodeError, ProtocolError):
        codec.loads(data, limits=SERVER_LIMITS)


@pytest.mark.parametrize(
    "body",
    [
        b'{"__numpy__": "AAAA", "dtype": "<f8", "shape": [1000000000000]}',
        b'{"__numpy__": "AAAA", "dtype": "<f8", "shape": [4294967296, 4294967296]}',
        b'{"__numpy__": "AAAA", "dtype": "|S2147483647", "shape": [1]}',
        b'{"__numpy__": "AAAA", "dtype": "<U1000000000", "shape": [4]}',
        b'[{"__numpy__": "AAAA", "dtype": "<c16", "shape": [67108864]}, "' + b"p" * codec._FAST_PATH_MIN_BYTES + b'"]',
        b'{"a": [' + b"9" * 1_000_000 + b"]}",
        b"[" * 500_000 + b"]" * 500_000,
    ],
)
def test_declared_sizes_are_checked_before_anything_is_allocated(body: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            codec.decode(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"peak {peak / 2**20:.1f} MiB"  # declared: 1 GiB to 8 TB; input <= 1 MB


def test_the_limits_name_their_option() -> None:
    with pytest.raises(ProtocolError, match="max_depth=64"):
        codec.decode(b"[" * 65 + b"]" * 65)
    assert codec.decode(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(ProtocolError, match="max_int_digits=100"):
        codec.decode(b"1" * 101)
    assert codec.decode(b"1" * 100) == int("1" * 100)
    with pytest.raises(ProtocolError, match="max_message_bytes=10"):
        codec.decode(b"[1, 2, 3, 4]", limits=DecodeLimits(max_message_bytes=10))
    with pytest.raises(ProtocolError, match="max_array_bytes=8"):
        codec.decode(codec.encode([np.zeros(2)]), limits=DecodeLimits(max_array_bytes=8))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"s": "[" * 500, "t": "}" * 500, "e": '\\"[[[' * 100, "l": [[1]] * 100})
    assert codec.decode(text.encode())["s"] == "[" * 500


# -------------------------------------------------------------------------------- HTTP framing


class ReplayServer:
    """Answers every request with ``self.reply`` and closes the connection."""

    def __init__(self) -> None:
        self.reply = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                connection.sendall(self.reply)
                connection.shutdown(socket.SHUT_WR)
                connection.recv(1)
            except OSError:
                pass


REPLY_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 55\r\n\r\n"
GOOD_REPLY = REPLY_HEAD + b'{"__numpy__":"AAAAAAAA8D8=","dtype":"<f8","shape":[1]}'


@st.composite
def http_replies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "random", "framing"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "framing":
        head = draw(st.sampled_from([
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + draw(st.sampled_from(
                [b"ffffffffffffffffff\r\n", b"zz\r\n", b"5\r\nab", b"3\r\n[1]XX0\r\n\r\n", b"3\r\n[1]\r\n0\r\n\r\n"])),
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n[1]",
            b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/9.9 200 OK\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[1]",
            b"HTTP/1.0 200 OK\r\n\r\n[1]",
        ]))
        return head
    data = bytearray(GOOD_REPLY)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.fixture(scope="module")
def replay_server() -> Iterator[ReplayServer]:
    server = ReplayServer()
    yield server
    server.listener.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(reply=http_replies())
def test_hostile_http_replies_give_typed_errors_in_time(replay_server: ReplayServer, reply: bytes) -> None:
    replay_server.reply = reply
    with HttpTransport(replay_server.endpoint, timeout=2.0, retry_attempts=0) as transport:
        started = time.monotonic()
        with contextlib.suppress(ProtocolError, TransportError, ServerError):
            transport.infer({"instruction": "x"})
        assert time.monotonic() - started < 2.5
