"""Array payloads of a large GR00T message read in place, not copied.

``msgpack.unpackb`` copies every bin into a new ``bytes``: for a request of a batch of camera
images that is the whole message once more, into fresh memory (tens of MB, a page fault per 4 KiB).
:func:`lift` walks the message's structure first and takes out each large bin that is the value of
an array payload key (``as_npy`` in the ``npy`` form, ``data`` in the ``nd`` form), putting a
5-byte placeholder (``fixext 4``: :data:`PLACEHOLDER_TYPE` and the bin's index) in its place.
msgpack then reads the small rest, and :func:`placeholder_hook` turns each placeholder back into a
read-only view of the bin in the original message. The decoder turns views that did not end up as
arrays back into ``bytes``, so the decoded value is what msgpack alone would give.

Only messages of :data:`LIFT_MIN_MESSAGE_BYTES` or more with at most :data:`MAX_SCANNED_ITEMS`
values are walked. A message that is not one well-formed msgpack value, or holds an ext type (which
GR00T messages never do), is left to msgpack as it is, so its errors stay msgpack's own.
"""

from __future__ import annotations

import struct
from typing import Any

from arena_adapters.transport.msgpack_format import CONSTANTS, NUMBERS, SIZED, U16, U32

PLACEHOLDER_TYPE = 42
"""The ext type code of a placeholder (any code: the message itself may hold no ext at all)."""
LIFT_MIN_MESSAGE_BYTES = 1 << 20
LIFT_MIN_BIN_BYTES = 1 << 16
MAX_SCANNED_ITEMS = 4096
PAYLOAD_KEYS = frozenset({b"\xa6as_npy", b"\xc4\x06as_npy", b"\xa4data", b"\xc4\x04data"})
"""The msgpack bytes of the keys whose bin values are lifted (as str or bin)."""

_PLACEHOLDER = struct.Struct(">BbI")
_FIXED_WIDTH = {**{code: 1 for code in CONSTANTS}, **{code: 1 + layout.size for code, layout in NUMBERS.items()}}
"""Bytes a value of one of these codes takes, its code included."""


class Lifted:
    """A message with its large payloads taken out (see the module docstring).

    Attributes:
        message: the rest, with a placeholder for each payload.
        payloads: read-only views of the payloads in the original message, by placeholder index.
    """

    __slots__ = ("message", "payloads")

    def __init__(self, message: bytes, payloads: list[memoryview]) -> None:
        self.message = message
        self.payloads = payloads


def lift(data: Any) -> Lifted | None:
    """``data`` with its large array payloads taken out, or ``None`` where there are none to take or
    the message is left to msgpack as it is (see the module docstring)."""
    view = memoryview(data).cast("B")
    if len(view) < LIFT_MIN_MESSAGE_BYTES:
        return None
    spans = _payload_spans(view)
    if not spans:
        return None
    parts: list[Any] = []
    payloads: list[memoryview] = []
    start = 0
    readonly = view.toreadonly()
    for header, begin, end in spans:
        parts.append(view[start:header])
        parts.append(_PLACEHOLDER.pack(0xD6, PLACEHOLDER_TYPE, len(payloads)))
        payloads.append(readonly[begin:end])
        start = end
    parts.append(view[start:])
    return Lifted(b"".join(parts), payloads)


def placeholder_hook(payloads: list[memoryview]) -> Any:
    """The ``ext_hook`` for ``msgpack.unpackb`` of :attr:`Lifted.message`: a placeholder's payload."""

    def hook(code: int, data: bytes) -> Any:
        if code != PLACEHOLDER_TYPE or len(data) != 4:  # the walk lifts no message with an ext of its own
            raise ValueError(f"unexpected ext type {code} in a lifted GR00T message")
        return payloads[U32(data, 0)[0]]

    return hook


def _payload_spans(view: memoryview) -> list[tuple[int, int, int]] | None:
    """``(header, start, end)`` of each bin to lift, in order; ``None`` if the walk stops (a
    malformed message, an ext type, a reserved byte, or more than :data:`MAX_SCANNED_ITEMS` values)."""
    end = len(view)
    spans: list[tuple[int, int, int]] = []
    # each open container: [values left, is a map, start of the last key, end of the last key]
    stack: list[list[int]] = [[1, 0, 0, 0]]
    pos = 0
    scanned = 0
    while stack:
        frame = stack[-1]
        if frame[0] == 0:
            stack.pop()
            continue
        scanned += 1
        if scanned > MAX_SCANNED_ITEMS or pos >= end:
            return None
        is_value = frame[1] and frame[0] % 2 == 1  # maps count keys and values; a value comes last
        frame[0] -= 1
        start = pos
        code = view[pos]
        size = 0
        container = False
        if code <= 0x7F or code >= 0xE0:
            pos += 1
        elif code <= 0x8F:
            size, container, pos = 2 * (code & 0x0F), True, pos + 1
            stack.append([size, 1, 0, 0])
        elif code <= 0x9F:
            size, container, pos = code & 0x0F, True, pos + 1
            stack.append([size, 0, 0, 0])
        elif code <= 0xBF:
            pos += 1 + (code & 0x1F)
        elif code in _FIXED_WIDTH:
            pos += _FIXED_WIDTH[code]
        elif code in SIZED:
            width, kind = SIZED[code]
            if pos + 1 + width > end:
                return None
            size = view[pos + 1] if width == 1 else (U16 if width == 2 else U32)(view, pos + 1)[0]
            pos += 1 + width
            container = kind in ("list", "map")
            if container:
                is_map = kind == "map"
                stack.append([2 * size if is_map else size, int(is_map), 0, 0])
            else:
                if (is_value and kind == "bin" and size >= LIFT_MIN_BIN_BYTES
                        and bytes(view[frame[2]:frame[3]]) in PAYLOAD_KEYS and pos + size <= end):
                    spans.append((start, pos, pos + size))
                pos += size
        else:  # ext types, 0xC1 (never used)
            return None
        if container and size > end - pos:  # every item takes a byte at least
            return None
        if pos > end:
            return None
        if frame[1] and not is_value:
            frame[2], frame[3] = start, pos
    return spans if pos == end else None
