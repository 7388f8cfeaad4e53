"""msgpack without the extra copies: a writer that gathers array payloads into one ``bytes``, and a
reader that hands bin payloads out as views of the message.

``msgpack.Packer`` copies every array payload into its buffer and then copies the buffer into the
returned ``bytes``; ``msgpack.unpackb`` copies every bin payload into a new ``bytes``. For a DROID
observation (two 224x224x3 images) those copies are the codec's whole cost. Here the writer emits
the msgpack headers itself and joins them with the arrays' memory in a single copy, and the reader
walks the message and slices it, so arrays decode without copying at all.

Both produce exactly what msgpack would (the writer's bytes are msgpack's; the reader returns the
same values as ``msgpack.unpackb(raw=False, strict_map_key=True)``). Values they do not handle
themselves go to msgpack: the writer packs unusual leaves (numbers, str, numpy scalars, dict or
list subclasses, ...) with the given packer; the reader raises :class:`NotHandled` for ext types
(msgpack's ``ExtType`` / ``Timestamp``) so the caller can decode the message with msgpack instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

MAX_DEPTH = 128
"""Deeper messages are left to msgpack (:class:`NotHandled`), which allows more."""
_WRITER_DEPTH = 16  # deeper subtrees are packed by msgpack itself


class NotHandled(Exception):
    """The message holds a msgpack type the reader leaves to msgpack (ext types)."""


class Malformed(ValueError):
    """The bytes are not a valid msgpack message (truncated, reserved byte, bad key, extra data...)."""


# --------------------------------------------------------------------------------- writer


def _sized(small: int, fixed_bits: int, codes: tuple[int, int], n: int) -> bytes:
    if n < small:
        return bytes((fixed_bits | n,))
    if n < 1 << 16:
        return bytes((codes[0],)) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes((codes[1],)) + n.to_bytes(4, "big")
    raise ValueError(f"container of {n} items is too large for msgpack")


def map_header(n: int) -> bytes:
    """The msgpack header of a map of ``n`` entries (fixmap, map16 or map32)."""
    return _sized(16, 0x80, (0xDE, 0xDF), n)


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (fixarray, array16 or array32)."""
    return _sized(16, 0x90, (0xDC, 0xDD), n)


def bin_header(n: int) -> bytes:
    """The msgpack header of ``n`` bytes of bin (bin8, bin16 or bin32)."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\xc6" + n.to_bytes(4, "big")
    raise ValueError(f"bin of {n} bytes is too large for msgpack")


LARGE_ARRAY_BYTES = 4096
"""Arrays from this size on are written from their own memory; smaller ones (and whole values
without such arrays) are packed by msgpack, whose copies cost less than walking them here."""


def _has_large_array(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind is np.ndarray:
        return bool(value.nbytes >= LARGE_ARRAY_BYTES)
    if depth >= _WRITER_DEPTH:
        return False
    if kind is dict:
        return any(_has_large_array(item, depth + 1) for item in value.values())
    if kind is list or kind is tuple:
        return any(_has_large_array(item, depth + 1) for item in value)
    return False


class GatherWriter:
    """Writes a value as msgpack into a list of parts (headers and array memory), joined once.

    Args:
        packer: packs the leaves (``use_bin_type=True``, with the ``default`` hook for numpy).
        array_parts: ``array_parts(array) -> parts`` for an ``np.ndarray`` to write directly
            (its whole msgpack form, payload as a buffer), or ``None`` to let ``packer`` take it.
    """

    def __init__(self, packer: msgpack.Packer, array_parts: Callable[[np.ndarray[Any, Any]], list[Any] | None]) -> None:
        self._packer = packer
        self._array_parts = array_parts
        self._keys: dict[str, bytes] = {}

    def write(self, value: Any) -> bytes:
        """The msgpack bytes of ``value``."""
        if not _has_large_array(value):
            return self._packer.pack(value)  # type: ignore[no-any-return]
        parts: list[Any] = []
        self._write(value, parts, 0)
        return b"".join(parts)

    def _write(self, value: Any, parts: list[Any], depth: int) -> None:
        kind = type(value)
        if depth > _WRITER_DEPTH or not _has_large_array(value):
            parts.append(self._packer.pack(value))
        elif kind is dict:
            parts.append(map_header(len(value)))
            for key, item in value.items():
                if type(key) is str:
                    parts.append(self._key(key))
                else:
                    self._write(key, parts, depth + 1)
                self._write(item, parts, depth + 1)
        elif kind is list or kind is tuple:
            parts.append(array_header(len(value)))
            for item in value:
                self._write(item, parts, depth + 1)
        elif kind is np.ndarray:
            array_parts = self._array_parts(value)
            if array_parts is None:
                parts.append(self._packer.pack(value))
            else:
                parts.extend(array_parts)
        else:
            parts.append(self._packer.pack(value))

    def _key(self, key: str) -> bytes:
        packed = self._keys.get(key)
        if packed is None:
            packed = self._packer.pack(key)
            if len(self._keys) < 1024:
                self._keys[key] = packed
        return packed


# --------------------------------------------------------------------------------- reader

_UNPACK = {
    0xCA: struct.Struct(">f"), 0xCB: struct.Struct(">d"),
    0xCC: struct.Struct(">B"), 0xCD: struct.Struct(">H"), 0xCE: struct.Struct(">I"), 0xCF: struct.Struct(">Q"),
    0xD0: struct.Struct(">b"), 0xD1: struct.Struct(">h"), 0xD2: struct.Struct(">i"), 0xD3: struct.Struct(">q"),
}
_LENGTH = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
_EXT = frozenset((0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8))
_CONSTANTS = {0xC0: None, 0xC2: False, 0xC3: True}
_BIN_WIDTH = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_UINT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}

MapHook = Callable[[dict[Any, Any]], Any]
"""Called with every decoded map whose bin values are still ``memoryview`` slices; returns the
value that stands for the map (and must turn views it keeps into what it wants)."""


class ViewReader:
    """Reads msgpack messages; bin values in maps reach ``map_hook`` as views of the message.
    Thread-safe: each :meth:`read` has its own state.

    Args:
        map_hook: called with every decoded map (see :data:`MapHook`).
        array_prefix: the bytes that open a numpy array map as ``msgpack_numpy`` writes it (map of
            4, ``__ndarray__: True``, the ``data`` key); such maps, when laid out exactly that way
            (``data``, ``dtype`` as str, ``shape`` as non-negative ints), are read on a short path
            and given to ``array_hook(data_view, dtype_text, shape_list)`` instead of ``map_hook``.
        array_hook: see ``array_prefix``.
    """

    def __init__(
        self,
        map_hook: MapHook,
        array_prefix: bytes = b"",
        array_hook: Callable[[memoryview, str, list[int]], Any] | None = None,
    ) -> None:
        self._map_hook = map_hook
        self._array_prefix = array_prefix if array_hook is not None else b""
        self._array_hook = array_hook

    def read(self, data: bytes | bytearray | memoryview) -> Any:
        """The value of the message ``data``.

        Raises:
            Malformed: not one valid msgpack value.
            NotHandled: an ext type, or nesting deeper than :data:`MAX_DEPTH` (decode with msgpack).
        """
        view = memoryview(data)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        return _Message(view, self._map_hook, self._array_prefix, self._array_hook).value()


_DTYPE_KEY = b"\xc4\x05dtype"
_SHAPE_KEY = b"\xc4\x05shape"


class _Message:
    """One message being read: the view and the hooks."""

    def __init__(
        self, view: memoryview, map_hook: MapHook, array_prefix: bytes,
        array_hook: Callable[[memoryview, str, list[int]], Any] | None,
    ) -> None:
        self._view = view
        self._end = len(view)
        self._map_hook = map_hook
        self._array_prefix = array_prefix
        self._array_hook = array_hook

    def value(self) -> Any:
        value, pos = self._read(0, 0)
        if pos != self._end:
            raise Malformed(f"{self._end - pos} bytes of extra data after the message")
        return _owned(value)

    def _take(self, pos: int, size: int) -> memoryview:
        end = pos + size
        if end > self._end:
            raise Malformed(f"message truncated: {size} bytes declared at offset {pos}, {self._end - pos} left")
        return self._view[pos:end]

    def _read(self, pos: int, depth: int) -> tuple[Any, int]:
        if pos >= self._end:
            raise Malformed("message truncated")
        code = self._view[pos]
        pos += 1
        if code <= 0x7F:
            return code, pos
        if code >= 0xE0:
            return code - 0x100, pos
        if code <= 0x8F:
            if code == 0x84 and self._array_prefix:
                found = self._array_map(pos - 1)
                if found is not None:
                    return found
            return self._map(pos, code & 0x0F, depth)
        if code <= 0x9F:
            return self._array(pos, code & 0x0F, depth)
        if code <= 0xBF:
            return self._str(pos, code & 0x1F)
        if code in _CONSTANTS:
            return _CONSTANTS[code], pos
        number = _UNPACK.get(code)
        if number is not None:
            if pos + number.size > self._end:
                raise Malformed("message truncated in a number")
            return number.unpack_from(self._view, pos)[0], pos + number.size
        width = _LENGTH.get(code)
        if width is not None:
            size = int.from_bytes(self._take(pos, width), "big")
            pos += width
            if code <= 0xC6:
                return self._take(pos, size), pos + size
            if code <= 0xDB:
                return self._str(pos, size)
            if code <= 0xDD:
                return self._array(pos, size, depth)
            return self._map(pos, size, depth)
        if code in _EXT:
            raise NotHandled("ext type")
        raise Malformed(f"reserved byte 0x{code:02x} at offset {pos - 1}")

    def _array_map(self, start: int) -> tuple[Any, int] | None:
        """A numpy array map in msgpack_numpy's exact layout at ``start``, or ``None`` (then the
        generic path reads it)."""
        view, prefix = self._view, self._array_prefix
        pos = start + len(prefix)
        if pos + 1 > self._end or view[start:pos] != prefix:
            return None
        width = _BIN_WIDTH.get(view[pos])
        if width is None:
            return None
        size = int.from_bytes(self._take(pos + 1, width), "big")
        pos += 1 + width
        data = self._take(pos, size)
        pos += size
        if view[pos:pos + 7] != _DTYPE_KEY or pos + 8 > self._end:
            return None
        code = view[pos + 7]
        if not 0xA0 <= code <= 0xBF:
            return None
        dtype_text, pos = self._str(pos + 8, code & 0x1F)
        if view[pos:pos + 7] != _SHAPE_KEY or pos + 8 > self._end:
            return None
        code = view[pos + 7]
        if not 0x90 <= code <= 0x9F:
            return None
        pos += 8
        shape = []
        for _ in range(code & 0x0F):
            if pos >= self._end:
                return None
            head = view[pos]
            if head <= 0x7F:
                shape.append(head)
                pos += 1
                continue
            width = _UINT_WIDTH.get(head)
            if width is None:
                return None  # not a non-negative int: the generic path decides
            shape.append(int.from_bytes(self._take(pos + 1, width), "big"))
            pos += 1 + width
        assert self._array_hook is not None
        return self._array_hook(data, dtype_text, shape), pos

    def _str(self, pos: int, size: int) -> tuple[str, int]:
        try:
            return str(self._take(pos, size), "utf-8"), pos + size
        except UnicodeDecodeError as exc:
            raise Malformed(f"invalid UTF-8 in a str: {exc}") from None

    def _array(self, pos: int, size: int, depth: int) -> tuple[list[Any], int]:
        if depth >= MAX_DEPTH:
            raise NotHandled(f"nested deeper than {MAX_DEPTH}")
        items = []
        for _ in range(size):
            item, pos = self._read(pos, depth + 1)
            items.append(_owned(item))
        return items, pos

    def _map(self, pos: int, size: int, depth: int) -> tuple[Any, int]:
        if depth >= MAX_DEPTH:
            raise NotHandled(f"nested deeper than {MAX_DEPTH}")
        node: dict[Any, Any] = {}
        for _ in range(size):
            key, pos = self._read(pos, depth + 1)
            if type(key) is memoryview:
                key = key.tobytes()
            elif type(key) is not str:
                raise Malformed(f"{type(key).__name__} is not allowed for map key (str or bin only)")
            node[key], pos = self._read(pos, depth + 1)
        return self._map_hook(node), pos


def _owned(value: Any) -> Any:
    return value.tobytes() if type(value) is memoryview else value


def owned_values(node: dict[Any, Any]) -> dict[Any, Any]:
    """``node`` with its view values turned into ``bytes`` (what msgpack would have returned)."""
    for key, value in node.items():
        if type(value) is memoryview:
            node[key] = value.tobytes()
    return node
