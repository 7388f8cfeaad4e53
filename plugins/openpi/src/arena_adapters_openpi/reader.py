"""Reading openpi messages in one pass, with arrays as views of the received bytes.

``msgpack.unpackb`` copies every bin payload into a new ``bytes`` and calls back into Python for
every map; for a DROID observation the copies of the two camera images are most of its work. This
reader walks the message once and returns what ``msgpack.unpackb(data, raw=False)`` would (str or
bin map keys only, lists for arrays, ``ExtType``/``Timestamp`` for ext types), except that array
maps in msgpack_numpy's layout become read-only numpy arrays over the message's own memory.

Every size a peer declares is checked against the bytes that are there, every container against
``max_depth`` and every array against ``max_ndim`` and ``max_array_bytes`` of the
:class:`~arena_adapters.transport.DecodeLimits`, before anything is built from it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from arena_adapters.errors import ProtocolError
from arena_adapters.transport import DecodeLimits
from arena_adapters.transport.msgpack_format import CONSTANTS, EXT_WIDTH, FIXEXT, NUMBERS, SIZED, U16, U32

DtypeCheck = Callable[[bytes, DecodeLimits], "np.dtype[Any]"]
"""``dtype_of(text, limits)``: the dtype an array map names, or :class:`ProtocolError`."""
MapHook = Callable[[dict[Any, Any], DecodeLimits], Any]
"""``map_hook(node, limits)``: the value that stands for a decoded map (``node`` itself, or the
array or scalar it describes). Called for every map not read as an array view."""

ARRAY_PREFIX = b"\x84\xc4\x0b__ndarray__\xc3\xc4\x04data"
"""How msgpack_numpy opens an array map: 4 entries, ``b"__ndarray__": True``, the ``b"data"`` key."""
_DTYPE_KEY = b"\xc4\x05dtype"
_SHAPE_KEY = b"\xc4\x05shape"
_TAIL_KEY_BYTES = 48
_TAIL_CACHE_SIZE = 256

_F64 = struct.Struct(">d").unpack_from


class Tail:
    """What follows an array's data: its dtype and shape, parsed once per distinct byte string."""

    __slots__ = ("dtype", "length", "nbytes", "shape", "unaligned")

    def __init__(self, dtype: np.dtype[Any], shape: tuple[int, ...], length: int) -> None:
        self.dtype = dtype
        self.shape = shape
        count = 1
        for size in shape:
            count *= size
        self.nbytes = count * dtype.itemsize
        self.length = length
        self.unaligned = dtype.alignment > 1


Slot = tuple[Any, int, "Tail | None"]
"""``(value, offset, tail)``: an array read as a view of the message (its data at ``offset``) or a
float64 (its 8 bytes at ``offset``, ``tail`` None)."""


class Malformed(ProtocolError):
    """The bytes are not one valid msgpack value (truncated, lying sizes, reserved bytes, ...)."""


_TAILS: dict[bytes, Tail | None] = {}


class _Message:
    """One message being read."""

    __slots__ = ("data", "deepest", "dtype_of", "end", "limits", "map_hook", "slots")

    def __init__(self, data: bytes, limits: DecodeLimits, dtype_of: DtypeCheck, map_hook: MapHook) -> None:
        self.data = data
        self.end = len(data)
        self.limits = limits
        self.dtype_of = dtype_of
        self.map_hook = map_hook
        self.deepest = 0
        """The depth of the deepest container read."""
        self.slots: list[Slot] = []
        """The arrays read as views and the float64 values, in message order (less those that a
        map hook consumed)."""


def read(
    data: bytes, limits: DecodeLimits, dtype_of: DtypeCheck, map_hook: MapHook
) -> tuple[Any, list[Slot], int]:
    """The value of the msgpack message ``data`` (see the module docstring), its slots (the arrays
    read as views and the float64 values, in message order) and the depth of its deepest map or
    array (array maps read as views are not counted).

    Raises:
        ProtocolError: not exactly one msgpack value, a map key that is not str or bin, nesting
            deeper than ``limits.max_depth``, an array beyond the limits, or what the hooks raise.
    """
    message = _Message(data, limits, dtype_of, map_hook)
    try:
        value, pos = _read(message, 0, 1)
    except RecursionError:
        raise ProtocolError("openpi message nests too deep to read") from None
    except (ValueError, TypeError, OverflowError) as exc:  # numpy refusing what the checks let through
        raise ProtocolError(f"openpi message: unreadable value: {type(exc).__name__}: {exc}") from None
    if pos != message.end:
        raise Malformed(f"openpi message: {message.end - pos} bytes of extra data after the value")
    return value, message.slots, message.deepest


def _truncated(message: _Message, pos: int, what: str) -> Malformed:
    return Malformed(f"openpi message truncated: {what} at offset {pos} runs past its end ({message.end} bytes)")


def _read(message: _Message, pos: int, depth: int) -> tuple[Any, int]:
    """The value that starts at ``pos`` and the offset after it; containers there are at ``depth``."""
    data = message.data
    if pos >= message.end:
        raise _truncated(message, pos, "a value")
    code = data[pos]
    if code <= 0x7F:
        return code, pos + 1
    if code <= 0x8F:
        if code == 0x84 and data.startswith(ARRAY_PREFIX, pos):
            found = _array(message, pos + len(ARRAY_PREFIX))
            if found is not None:
                return found
        return _map(message, pos + 1, code & 0x0F, depth)
    if code <= 0x9F:
        return _list(message, pos + 1, code & 0x0F, depth)
    if code <= 0xBF:
        return _str(message, pos + 1, code & 0x1F)
    if code == 0xCB and pos + 9 <= message.end:
        number = _F64(data, pos + 1)[0]
        message.slots.append((number, pos + 1, None))
        return number, pos + 9
    if code >= 0xE0:
        return code - 0x100, pos + 1
    if code in CONSTANTS:
        return CONSTANTS[code], pos + 1
    layout = NUMBERS.get(code)
    if layout is not None:
        if pos + 1 + layout.size > message.end:
            raise _truncated(message, pos, "a number")
        return layout.unpack_from(data, pos + 1)[0], pos + 1 + layout.size
    sized = SIZED.get(code)
    if sized is None:
        return _ext(message, pos, code)
    width, kind = sized
    if pos + 1 + width > message.end:
        raise _truncated(message, pos, f"the size of a {kind}")
    size = data[pos + 1] if width == 1 else (U16 if width == 2 else U32)(data, pos + 1)[0]
    pos += 1 + width
    if kind == "bin":
        end = pos + size
        if end > message.end:
            raise _truncated(message, pos, f"a bin of {size:,} bytes")
        return data[pos:end], end
    if kind == "str":
        return _str(message, pos, size)
    if kind == "list":
        return _list(message, pos, size, depth)
    return _map(message, pos, size, depth)


def _str(message: _Message, pos: int, size: int) -> tuple[str, int]:
    end = pos + size
    if end > message.end:
        raise _truncated(message, pos, f"a str of {size:,} bytes")
    try:
        return message.data[pos:end].decode(), end
    except UnicodeDecodeError as exc:
        raise Malformed(f"openpi message: the str at offset {pos} is not UTF-8: {exc.reason}") from None


def _list(message: _Message, pos: int, size: int, depth: int) -> tuple[list[Any], int]:
    if depth > message.deepest:
        message.limits.check_depth(depth, "openpi message")
        message.deepest = depth
    if size > message.end - pos:  # every item takes at least one byte
        raise _truncated(message, pos, f"an array of {size:,} items")
    items = []
    depth += 1
    for _ in range(size):
        item, pos = _read(message, pos, depth)
        items.append(item)
    return items, pos


def _map(message: _Message, pos: int, size: int, depth: int) -> tuple[Any, int]:
    if depth > message.deepest:
        message.limits.check_depth(depth, "openpi message")
        message.deepest = depth
    end = message.end
    if size > (end - pos) // 2:  # every entry takes at least two bytes
        raise _truncated(message, pos, f"a map of {size:,} entries")
    data = message.data
    node: dict[Any, Any] = {}
    slots = message.slots
    mark = len(slots)
    depth += 1
    for _ in range(size):
        code = data[pos] if pos < end else -1
        if 0xA0 <= code <= 0xBF:
            stop = pos + 1 + (code & 0x1F)
            if stop > end:
                raise _truncated(message, pos, "a key")
            try:
                key: Any = data[pos + 1:stop].decode()
            except UnicodeDecodeError as exc:
                raise Malformed(f"openpi message: the key at offset {pos} is not UTF-8: {exc.reason}") from None
            pos = stop
        else:
            key, pos = _read(message, pos, depth)
            if type(key) is not str and type(key) is not bytes:
                raise Malformed(f"openpi message: a map key must be str or bin, got {type(key).__name__}")
        node[key], pos = _read(message, pos, depth)
    value = message.map_hook(node, message.limits)
    if value is not node and len(slots) > mark:
        del slots[mark:]  # consumed by the hook: their bytes now decide the value like any others
    return value, pos


def _array(message: _Message, pos: int) -> tuple[np.ndarray[Any, Any], int] | None:
    """The array whose map (in msgpack_numpy's layout) continues at ``pos``, after the ``data``
    key; ``None`` where the layout differs (then the map is read as any other)."""
    data, end = message.data, message.end
    if pos + 5 > end:
        return None
    code = data[pos]
    if code == 0xC4:
        size, pos = data[pos + 1], pos + 2
    elif code == 0xC5:
        size, pos = U16(data, pos + 1)[0], pos + 3
    elif code == 0xC6:
        size, pos = U32(data, pos + 1)[0], pos + 5
    else:
        return None
    start, pos = pos, pos + size
    if pos > end:
        raise _truncated(message, start, f"a bin of {size:,} bytes")
    key = data[pos:pos + _TAIL_KEY_BYTES]
    try:
        tail = _TAILS[key]
    except KeyError:
        tail = _parse_tail(message, pos)
        if len(_TAILS) >= _TAIL_CACHE_SIZE:
            _TAILS.clear()
        _TAILS[key] = tail
    if tail is None:
        return None
    limits = message.limits
    if len(tail.shape) > limits.max_ndim:
        raise ProtocolError(
            f"openpi array: shape must be a list of at most {limits.max_ndim} ints, got {list(tail.shape)}"[:200]
        )
    if tail.nbytes != size:
        raise ProtocolError(
            f"openpi array: {tail.dtype.str} {tail.shape} needs {tail.nbytes} bytes of data, got {size}"
        )
    if size > limits.max_array_bytes:
        raise ProtocolError(f"openpi array of {size} bytes exceeds max_array_bytes={limits.max_array_bytes}")
    array: np.ndarray[Any, Any] = np.ndarray(tail.shape, tail.dtype, data, start)
    if tail.unaligned and not array.flags.aligned:
        array = np.ndarray(tail.shape, tail.dtype, data[start:pos])
    message.slots.append((array, start, tail))
    return array, pos + tail.length


def _parse_tail(message: _Message, pos: int) -> Tail | None:
    """The ``dtype`` and ``shape`` entries at ``pos`` (str dtype, non-negative ints), or ``None``
    where they are laid out otherwise. Only reads the bytes of the first ``_TAIL_KEY_BYTES``."""
    data = message.data
    end = min(message.end, pos + _TAIL_KEY_BYTES)
    start = pos
    if pos + 8 > end or not data.startswith(_DTYPE_KEY, pos):
        return None
    code = data[pos + 7]
    if not 0xA0 <= code <= 0xBF:
        return None
    pos += 8
    dtype_text, pos = data[pos:pos + (code & 0x1F)], pos + (code & 0x1F)
    if pos + 8 > end or not data.startswith(_SHAPE_KEY, pos):
        return None
    code = data[pos + 7]
    if not 0x90 <= code <= 0x9F:
        return None
    pos += 8
    shape = []
    for _ in range(code & 0x0F):
        code = data[pos] if pos < end else -1
        if 0 <= code <= 0x7F:
            shape.append(code)
            pos += 1
        elif code == 0xCC and pos + 2 <= end:
            shape.append(data[pos + 1])
            pos += 2
        elif code == 0xCD and pos + 3 <= end:
            shape.append(U16(data, pos + 1)[0])
            pos += 3
        elif code == 0xCE and pos + 5 <= end:
            shape.append(U32(data, pos + 1)[0])
            pos += 5
        else:
            return None
    return Tail(message.dtype_of(dtype_text, message.limits), tuple(shape), pos - start)


def _ext(message: _Message, pos: int, code: int) -> tuple[Any, int]:
    size = FIXEXT.get(code)
    if size is not None:
        head = pos + 2
    else:
        width = EXT_WIDTH.get(code)
        if width is None:
            raise Malformed(f"openpi message: reserved byte 0x{code:02x} at offset {pos}")
        head = pos + 2 + width
        if head > message.end:
            raise _truncated(message, pos, "an ext header")
        size = int.from_bytes(message.data[pos + 1:pos + 1 + width], "big")
    end = head + size
    if end > message.end:
        raise _truncated(message, pos, f"an ext of {size:,} bytes")
    kind = int.from_bytes(message.data[head - 1:head], "big", signed=True)
    payload = message.data[head:end]
    try:
        return (msgpack.Timestamp.from_bytes(payload) if kind == -1 else msgpack.ExtType(kind, payload)), end
    except ValueError as exc:
        raise Malformed(f"openpi message: unreadable ext type {kind} at offset {pos}: {exc}") from None
