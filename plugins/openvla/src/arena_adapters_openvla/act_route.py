"""The hot path of the reference server: ``POST /act`` served by a bare ASGI layer in front of FastAPI.

A well-formed request (``Content-Type: application/json``, a ``Content-Length`` within the cap, a
body that decodes to a JSON object) is read, decoded and answered here, without FastAPI's routing,
middlewares and request validation, which cost the server more per request than the decode, the
policy call and the encode together. Every other request, and every request this layer cannot
answer exactly as FastAPI would (no or another content type, chunked or over-cap bodies, an empty
body, text that is not JSON, JSON that is not an object, a body beyond the decode limits, a client
that left mid-body), goes on to the FastAPI app unchanged: the messages already read from the
client are handed to it again first, so FastAPI reads the same body and gives its own answer (413,
422, 400 ...). The reply of the hot path is what FastAPI sends for the route's ``Response``: the
same status, headers and body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Decode = Callable[[bytes], Any]
"""Request body -> payload; raises on anything that is not json_numpy JSON within the limits."""
Handle = Callable[[dict[str, Any]], Awaitable[bytes]]
"""Decoded payload -> reply body (the route's handler)."""

_JSON_CONTENT_TYPE = b"application/json"


class ActRoute:
    """Serves ``POST {path}`` with ``decode`` and ``handle``; hands everything else to ``app``.

    Args:
        app: the FastAPI app that serves every other request, and the requests this layer leaves
            to it (see the module docstring).
        path: the route (``/act``).
        decode: reads a request body (it runs on the event loop, as FastAPI's body parsing does).
        handle: the route's handler, awaited with the decoded JSON object.
        max_body_bytes: the request cap: a body declared or grown larger is left to ``app``, which
            answers 413.
        state: what :attr:`state` holds (the FastAPI app's ``state``).

    Attributes:
        served: the requests answered here rather than by ``app`` (for tests and monitoring).
        served_below_asgi: of them, those :class:`~arena_adapters_openvla.act_protocol.ActProtocol`
            answered on its connections, without going through ASGI.
    """

    def __init__(self, app: ASGIApp, path: str, decode: Decode, handle: Handle, max_body_bytes: int,
                 state: Any = None) -> None:
        self.app = app
        self.state = state
        self.path = path
        self.decode = decode
        self.handle = handle
        self.max_body_bytes = max_body_bytes
        self.served = 0
        self.served_below_asgi = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = self.declared_length(scope["headers"])
        if declared is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                await self.app(scope, _replay(messages, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self.app(scope, _replay(messages, receive), send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        payload = self.payload(body)
        if payload is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        self.served += 1
        reply = await self.handle(payload)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(reply)), (b"content-type", _JSON_CONTENT_TYPE)]})
        await send({"type": "http.response.body", "body": reply})

    def declared_length(self, headers: list[tuple[bytes, bytes]]) -> int | None:
        """The body's ``Content-Length`` when the hot path may serve the request: one JSON content
        type, one length within the cap, no transfer coding; else ``None``."""
        length: int | None = None
        content_type = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                if length is not None or not value.isdigit() or len(value) > 18:
                    return None
                length = int(value)
            elif lowered == b"content-type":
                if content_type or value.lower() != _JSON_CONTENT_TYPE:
                    return None
                content_type = True
            elif lowered == b"transfer-encoding":
                return None
        if not content_type or length is None or not 0 < length <= self.max_body_bytes:
            return None
        return length

    def payload(self, body: bytes) -> dict[str, Any] | None:
        """The decoded JSON object, or ``None`` when FastAPI must answer (not JSON, not an object,
        beyond the limits)."""
        try:
            payload = self.decode(body)
        except Exception:
            return None
        return payload if type(payload) is dict else None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` again, then the client's next ones."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
