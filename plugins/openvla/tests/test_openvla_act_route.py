"""The reference server's hot paths (ActProtocol below ASGI, ActRoute in front of FastAPI) answer
POST /act exactly as its FastAPI route does.

Each request is sent twice over a raw socket: with ``Content-Type: application/json`` (served by
the hot path) and with ``application/json; charset=utf-8`` (which the hot paths leave to FastAPI,
which parses it as JSON all the same); the status line, the headers (less ``date``) and the body
must be byte for byte the same. ActProtocol keeps a connection while its requests are ones it
serves and hands it to uvicorn (ActRoute, FastAPI) at the first one it does not.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import json_numpy
import numpy as np
import pytest
from arena_adapters_openvla import codec
from arena_adapters_openvla.server import ReferenceServer

ServerFactory = Callable[..., ReferenceServer]
IMAGE = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
HOT = "application/json"
FASTAPI = "application/json; charset=utf-8"


def _exchange(server: ReferenceServer, body: bytes, content_type: str | None, *, chunked: bool = False,
              sent: int | None = None) -> bytes:
    """One request on a fresh connection; the whole reply (the server closes after it).

    ``sent`` sends only that many bytes of the body (its length and a chunked body's one chunk
    size still declare it whole, and no end follows): for requests the server refuses before
    reading them whole. The server must have read every byte sent before it closes, or the
    kernel answers the unread bytes with a reset that can overtake the reply.
    """
    head = "POST /act HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    part = body if sent is None else body[:sent]
    if chunked:
        data = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body) + part
        data += b"\r\n0\r\n\r\n" if sent is None else b""
    else:
        data = head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + part
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def _without_date(reply: bytes) -> bytes:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _same_reply_both_ways(server: ReferenceServer, body: bytes) -> bytes:
    served, below_asgi = server.app.served, server.app.served_below_asgi
    hot = _exchange(server, body, HOT)
    assert server.app.served == served + 1 and server.app.served_below_asgi == below_asgi + 1
    fastapi = _exchange(server, body, FASTAPI)
    assert server.app.served == served + 1
    assert _without_date(hot) == _without_date(fastapi)
    return hot


def test_an_openvla_action_is_the_same_reply_as_fastapis(start_server: ServerFactory) -> None:
    server = start_server()
    reply = _same_reply_both_ways(server, codec.encode({"image": IMAGE, "instruction": "pick up the cup"}))
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-type: application/json" in reply
    action = json_numpy.loads(reply.partition(b"\r\n\r\n")[2])
    assert action.shape == (7,) and action[3:].tolist() == [32.0, 48.0, 15.0, 0.0]
    assert server.stats.requests == 2


def test_an_oft_chunk_and_the_encoded_form_are_the_same_replies_as_fastapis(start_server: ServerFactory) -> None:
    server = start_server(variant="oft", chunk_size=4)
    payload = {"full_image": IMAGE, "wrist_image": IMAGE, "state": np.ones(8), "instruction": "go"}
    chunk = json_numpy.loads(_same_reply_both_ways(server, codec.encode(payload)).partition(b"\r\n\r\n")[2])
    assert len(chunk) == 4 and [row[6] for row in chunk] == [9.0 + i for i in range(4)]
    encoded = _same_reply_both_ways(server, codec.encode_double(payload)).partition(b"\r\n\r\n")[2]
    assert len(json_numpy.loads(json_numpy.loads(encoded))) == 4


def test_a_handler_error_is_the_same_200_error_as_fastapis(start_server: ServerFactory) -> None:
    def broken(payload: dict[str, Any]) -> Any:
        raise RuntimeError("model failure")

    server = start_server(broken)
    reply = _same_reply_both_ways(server, codec.encode({"image": IMAGE, "instruction": "x"}))
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b'\r\n\r\n"error"')
    assert server.stats.errors == 2


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not json", HOT, b"422"),  # read by the hot path, then handed to FastAPI
        (b"[1, 2]", HOT, b"422"),
        (b"", HOT, b"422"),
        (codec.encode({"image": IMAGE, "instruction": "x"}), "text/plain", b"422"),
        (codec.encode({"image": IMAGE, "instruction": "x"}), None, b"422"),
    ],
)
def test_requests_the_hot_path_leaves_to_fastapi_get_fastapis_answer(
    start_server: ServerFactory, body: bytes, content_type: str | None, status: bytes
) -> None:
    server = start_server()
    reply = _exchange(server, body, content_type)
    assert reply.split(b" ", 2)[1] == status, reply[:300]
    assert server.app.served == 0 and server.stats.requests == 0


def test_a_chunked_body_is_served_by_fastapi_and_over_the_cap_is_413(start_server: ServerFactory) -> None:
    server = start_server(max_message_bytes=20_000)
    small = codec.encode({"image": IMAGE[:8, :8], "instruction": "x"})
    assert _exchange(server, small, HOT, chunked=True).startswith(b"HTTP/1.1 200 OK")
    large = codec.encode({"image": np.zeros((100, 100, 3), np.uint8), "instruction": "x"})  # ~40 KB
    # refused while streaming, as soon as it has read one byte over the cap: all that is sent
    reply = _exchange(server, large, HOT, chunked=True, sent=20_001)
    assert reply.startswith(b"HTTP/1.1 413") and b"max_message_bytes=20,000" in reply
    assert _exchange(server, large, HOT, sent=0).startswith(b"HTTP/1.1 413")  # from its Content-Length
    assert server.app.served == 0 and server.stats.requests == 1


# ------------------------------------------------------------------- ActProtocol's connections


def _request(body: bytes, *, headers: str = "", path: str = "/act", method: str = "POST") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {HOT}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _read_reply(reader: Any) -> tuple[bytes, bytes]:
    """One reply (status line and headers, body) from a keep-alive connection's file."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, f"the connection closed after {head!r}"
        head += line
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head, reader.read(length)


def _payload_with(instruction: str) -> bytes:
    return codec.encode({"image": IMAGE, "instruction": instruction})


def test_a_keep_alive_connection_is_served_below_asgi_request_after_request(start_server: ServerFactory) -> None:
    server = start_server()
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        for instruction in ("a", "bb", "ccc"):
            sock.sendall(_request(_payload_with(instruction)))
            head, body = _read_reply(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head
            assert json_numpy.loads(body).shape == (7,)
    assert server.app.served_below_asgi == 3 and server.stats.requests == 3


def test_pipelined_requests_are_answered_in_order(start_server: ServerFactory) -> None:
    server = start_server(lambda payload: np.full(7, float(len(payload["instruction"]))))
    requests = b"".join(_request(_payload_with("x" * n)) for n in (1, 2, 3))
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        sock.sendall(requests)
        actions = [json_numpy.loads(_read_reply(reader)[1])[0] for _ in range(3)]
    assert actions == [1.0, 2.0, 3.0] and server.app.served_below_asgi == 3


def test_a_request_that_arrives_a_byte_at_a_time_is_served(start_server: ServerFactory) -> None:
    server = start_server()
    data = _request(codec.encode({"image": IMAGE[:4, :4], "instruction": "x"}))
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(len(data)):
            sock.send(data[index:index + 1])
        head, body = _read_reply(reader)
    assert head.startswith(b"HTTP/1.1 200 OK") and json_numpy.loads(body).shape == (7,)
    assert server.app.served_below_asgi == 1


def test_the_first_request_it_does_not_take_hands_the_connection_to_uvicorn(start_server: ServerFactory) -> None:
    server = start_server()
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        sock.sendall(_request(_payload_with("a")))
        assert _read_reply(reader)[0].startswith(b"HTTP/1.1 200 OK")
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # FastAPI's, through uvicorn
        head, body = _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200 OK") and b'"/act"' in body
        sock.sendall(_request(b"not json"))  # read by ActRoute now, then FastAPI's 422
        assert _read_reply(reader)[0].startswith(b"HTTP/1.1 422")
        sock.sendall(_request(_payload_with("b")))  # ActRoute's hot path on uvicorn's side
        assert json_numpy.loads(_read_reply(reader)[1]).shape == (7,)
    assert server.app.served == 2 and server.app.served_below_asgi == 1


@pytest.mark.parametrize("headers", ["Expect: 100-continue\r\n", "Connection: upgrade\r\nUpgrade: h2c\r\n",
                                     " folded-continuation\r\n", "Bad Name: x\r\n"])
def test_heads_it_does_not_handle_go_to_uvicorn(start_server: ServerFactory, headers: str) -> None:
    server = start_server()
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        sock.sendall(_request(_payload_with("a"), headers=headers))
        head = reader.readline()
    assert server.app.served_below_asgi == 0
    if not headers.startswith(" "):
        assert head.startswith(b"HTTP/1.1 ")


def test_the_bearer_token_is_checked_before_it_serves(start_server: ServerFactory) -> None:
    server = start_server(api_key="s3cret")
    for token, status, below_asgi in (("s3cret", b"200", 1), ("wrong", b"401", 1), ("s3cret", b"200", 2)):
        reply = _exchange_with(server, _request(_payload_with("a"), headers=f"Authorization: Bearer {token}\r\n"))
        assert reply.split(b" ", 2)[1] == status and server.app.served_below_asgi == below_asgi
    twice = "Authorization: Bearer wrong\r\nAuthorization: Bearer s3cret\r\n"
    assert _exchange_with(server, _request(_payload_with("a"), headers=twice)).split(b" ", 2)[1] == b"401"
    assert server.app.served_below_asgi == 2


def _exchange_with(server: ReferenceServer, data: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        sock.sendall(data)
        head, body = _read_reply(reader)
    return head + body


def test_stop_closes_an_idle_keep_alive_connection_promptly(start_server: ServerFactory) -> None:
    server = start_server()
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        sock.sendall(_request(_payload_with("a")))
        _read_reply(reader)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        assert reader.read() == b""  # closed by the server


def test_below_asgi_false_sends_every_request_through_uvicorns_asgi_layer(start_server: ServerFactory) -> None:
    server = start_server(below_asgi=False)
    with socket.create_connection((server.host, server.port), timeout=10) as sock, sock.makefile("rb") as reader:
        for instruction in ("a", "bb"):
            sock.sendall(_request(_payload_with(instruction)))
            assert json_numpy.loads(_read_reply(reader)[1]).shape == (7,)
    assert server.app.served == 2 and server.app.served_below_asgi == 0
