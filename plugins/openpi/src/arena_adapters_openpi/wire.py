"""A msgpack writer that gathers array memory into the message with one copy.

``msgpack.Packer`` with a ``default`` hook copies every array three times: ``tobytes()`` in the
hook, into the packer's buffer, and from the buffer into the returned ``bytes``. Here the msgpack
headers are written as small ``bytes`` and the arrays' own memory is joined with them in a single
copy. The bytes are msgpack's: everything that is not a dict, list, tuple or large array is packed
by the given msgpack packer, and array maps come from a caller's function that writes exactly what
the ``default`` hook would have produced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

LARGE_ARRAY_BYTES = 4096
"""Arrays from this size on are written from their own memory; values without such arrays are
packed by msgpack in one call, which is faster for small data."""
MAX_WALK_DEPTH = 16
"""Deeper subtrees are packed by msgpack itself."""


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


def has_large_array(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds an ``np.ndarray`` of at least :data:`LARGE_ARRAY_BYTES` in a plain
    dict/list/tuple tree (up to :data:`MAX_WALK_DEPTH`)."""
    kind = type(value)
    if kind is np.ndarray:
        return bool(value.nbytes >= LARGE_ARRAY_BYTES)
    if kind is dict:
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False
    if depth >= MAX_WALK_DEPTH:
        return False
    for item in items:
        item_kind = type(item)
        if item_kind is np.ndarray:
            if item.nbytes >= LARGE_ARRAY_BYTES:
                return True
        elif (item_kind is dict or item_kind is list or item_kind is tuple) and has_large_array(item, depth + 1):
            return True
    return False


ArrayParts = Callable[[np.ndarray[Any, Any]], "list[Any] | None"]
"""``array_parts(array)``: the array's whole msgpack form as parts (headers as bytes, the payload as
a buffer), or ``None`` to let the packer (and its ``default`` hook) write it."""


class GatherWriter:
    """Writes values as msgpack: headers and array memory gathered, then joined once.

    Args:
        packer: packs everything else (``use_bin_type=True``, with the ``default`` hook for numpy).
        array_parts: see :data:`ArrayParts`.
    """

    def __init__(self, packer: msgpack.Packer, array_parts: ArrayParts) -> None:
        self._packer = packer
        self._array_parts = array_parts
        self._keys: dict[str, bytes] = {}

    def write(self, value: Any) -> bytes:
        """The msgpack bytes of ``value``."""
        if not has_large_array(value):
            return self._packer.pack(value)  # type: ignore[no-any-return]
        parts: list[Any] = []
        self._write(value, parts, 0)
        return b"".join(parts)

    def _write(self, value: Any, parts: list[Any], depth: int) -> None:
        kind = type(value)
        if kind is np.ndarray:
            array_parts = self._array_parts(value)
            if array_parts is not None:
                parts += array_parts
                return
        elif depth < MAX_WALK_DEPTH and (kind is dict or kind is list or kind is tuple) and has_large_array(value):
            if kind is dict:
                parts.append(map_header(len(value)))
                for key, item in value.items():
                    if type(key) is str:
                        parts.append(self._keys.get(key) or self._key(key))
                    else:
                        parts.append(self._packer.pack(key))
                    self._write(item, parts, depth + 1)
            else:
                parts.append(array_header(len(value)))
                for item in value:
                    self._write(item, parts, depth + 1)
            return
        parts.append(self._packer.pack(value))

    def _key(self, key: str) -> bytes:
        packed: bytes = self._packer.pack(key)
        if len(self._keys) < 1024:
            self._keys[key] = packed
        return packed
