"""The reference server's hot path below uvicorn's ASGI layer: a connection protocol that answers
well-formed ``POST /act`` requests itself and hands everything else to uvicorn.

uvicorn's own protocol costs a 400 KB OpenVLA request more CPU than its decode, policy call and
encode together: its parser pauses reading every 64 KB until the app asks for more, and the body
is copied three times on its way through ASGI messages. :class:`ActProtocol` reads a request into
one buffer, checks its head strictly, and answers it with :class:`ActRoute`'s decode and handler
(the policy still runs on the server's handler threads) and the same reply bytes uvicorn would
write. The first request it does not take (another method or path, a header it does not handle,
chunked or over-cap bodies, a body that is not a JSON object, a wrong bearer token) is handed
with the rest of the connection to uvicorn's protocol, which serves it through ASGI as before:
:class:`ActRoute`, the bearer check, FastAPI and its errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any, cast

from arena_adapters_openvla.act_route import ActRoute

MAX_HEAD_BYTES = 16 * 1024
"""A request head this long without its end goes to uvicorn (which refuses it as it does)."""

_HEAD_END = b"\r\n\r\n"
_HANDED_OFF_HEADERS = frozenset((b"expect", b"upgrade", b"transfer-encoding"))
"""Headers whose requests uvicorn serves: it implements what they ask for."""
_STATUS_200 = b"HTTP/1.1 200 OK\r\n"
_STATUS_500 = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
               b"connection: close\r\ncontent-length: 21\r\n\r\nInternal Server Error")


class ActProtocol(asyncio.Protocol):
    """One client connection of the reference server (the ``http`` protocol uvicorn is given).

    Args:
        config, server_state, app_state, _loop: what uvicorn passes to its protocols; the
            connection keeps uvicorn's keep-alive timeout, default headers and shutdown.
        route: the server's :class:`ActRoute` (its path, decode, handler and cap; it counts the
            requests served here in ``served`` too).
        fallback: uvicorn's protocol class, which takes over a connection at its first request
            that is not served here.
        authorization: the ``Authorization`` value every request must carry, if any.
    """

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, route: ActRoute,
                 fallback: type[asyncio.Protocol], authorization: bytes | None) -> None:
        self._uvicorn = {"config": config, "server_state": server_state, "app_state": app_state, "_loop": _loop}
        self._loop = _loop or asyncio.get_event_loop()
        self._route = route
        self._fallback = fallback
        self._authorization = authorization
        self._request_line = b"POST " + route.path.encode("latin-1") + b" HTTP/1.1"
        self._state = server_state
        self._keep_alive_s: float = config.timeout_keep_alive
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()  # a request's head, until it is whole
        self._head: tuple[bytes, int, bool] | None = None  # the head read: raw, Content-Length, keep-alive
        self._body: list[bytes] = []  # what came after the head
        self._body_bytes = 0
        self._serving = False
        self._closing = False
        self._writing_paused = False
        self._handed_off = False
        self._idle_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one in all but its base class
        self._state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._cancel_idle_timer()
        if self._head is None:
            self._buffer += data
        else:  # the body: kept as it came, joined once
            self._body.append(data)
            self._body_bytes += len(data)
        if not self._serving:
            self._next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_idle_timer()
        self._state.connections.discard(self)
        self._closing = True

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._serving and self._transport is not None and not self._closing:
            self._transport.resume_reading()

    # ------------------------------------------------------------------------ uvicorn's calls

    def shutdown(self) -> None:
        """Close once the request being served (if any) was answered (uvicorn's graceful stop)."""
        self._closing = True
        if not self._serving and self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------------------ internals

    def _next_request(self) -> None:
        """Serve the request at the start of the buffer once it is whole, or hand the connection off."""
        if self._head is None and not self._read_head():
            return
        assert self._head is not None
        _, length, keep_alive = self._head
        if self._body_bytes < length:
            return
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        body, rest = (data, b"") if len(data) == length else (data[:length], data[length:])
        payload = self._route.payload(body)
        if payload is None:
            self._body = [data]
            self._hand_off()
            return
        self._head, self._body, self._body_bytes = None, [], 0
        self._buffer = bytearray(rest)
        assert self._transport is not None
        self._serving = True
        self._transport.pause_reading()
        self._route.served += 1
        self._route.served_below_asgi += 1
        task = self._loop.create_task(self._serve(payload, keep_alive))
        self._state.tasks.add(task)
        task.add_done_callback(self._state.tasks.discard)

    def _read_head(self) -> bool:
        """Whether a head this protocol serves was read from the buffer (the rest moves to the body);
        hands the connection off when the head is one for uvicorn."""
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._hand_off()
            return False
        raw = bytes(self._buffer[:end + len(_HEAD_END)])
        parsed = self._parse_head(raw[:end])
        if parsed is None:
            self._hand_off()
            return False
        self._head = (raw, *parsed)
        rest = bytes(self._buffer[end + len(_HEAD_END):])
        self._buffer = bytearray()
        self._body, self._body_bytes = ([rest], len(rest)) if rest else ([], 0)
        return True

    def _parse_head(self, head: bytes) -> tuple[int, bool] | None:
        """``(Content-Length, keep-alive)`` of a request served here; ``None`` for uvicorn's."""
        request_line, *lines = head.split(b"\r\n")
        if request_line != self._request_line:
            return None
        headers = []
        keep_alive = True
        tokens_given: list[bytes] = []
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
                return None  # malformed, or a folded line: uvicorn's parser decides
            name, value = name.lower(), value.strip(b" \t")
            if name in _HANDED_OFF_HEADERS:
                return None
            if name == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                if not tokens <= {b"keep-alive", b"close"}:
                    return None
                keep_alive = b"close" not in tokens
            elif name == b"authorization":
                tokens_given.append(value)
            headers.append((name, value))
        if self._authorization is not None and not (
                len(tokens_given) == 1 and hmac.compare_digest(tokens_given[0], self._authorization)):
            return None  # uvicorn's side answers 401
        length = self._route.declared_length(headers)
        return None if length is None else (length, keep_alive)

    async def _serve(self, payload: dict[str, Any], keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        try:
            reply = await self._route.handle(payload)
        except Exception:
            if not transport.is_closing():
                transport.write(_STATUS_500)
                transport.close()
            return
        if transport.is_closing():
            return
        head = [_STATUS_200]
        head += [b"%s: %s\r\n" % (name, value) for name, value in self._state.default_headers]
        head.append(b"content-length: %d\r\ncontent-type: application/json\r\n" % len(reply))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        transport.write(b"".join(head) + reply)
        self._state.total_requests += 1
        self._serving = False
        if not keep_alive or self._closing:
            transport.close()
            return
        if self._buffer:
            self._next_request()
        if not self._serving and not self._handed_off:
            self._arm_idle_timer()
            if not self._writing_paused:
                transport.resume_reading()

    def _hand_off(self) -> None:
        """Give the connection, from the request at the start of the buffer on, to uvicorn."""
        assert self._transport is not None
        self._handed_off = True
        self._cancel_idle_timer()
        self._state.connections.discard(self)
        if not self._transport.is_reading():
            self._transport.resume_reading()
        protocol = self._fallback(**self._uvicorn)
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        head = self._head[0] if self._head is not None else b""
        data = b"".join([head, bytes(self._buffer), *self._body])
        self._head, self._buffer, self._body = None, bytearray(), []
        protocol.data_received(data)

    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        self._idle_timer = self._loop.call_later(self._keep_alive_s, self._close_idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_idle(self) -> None:
        if not self._serving and not self._buffer and self._head is None and self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
