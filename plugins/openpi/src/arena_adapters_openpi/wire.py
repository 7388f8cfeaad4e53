"""A msgpack writer that gathers large arrays' memory into the message with one copy.

``msgpack.Packer`` with a ``default`` hook copies every array three times: ``tobytes()`` in the
hook, into the packer's buffer, and from the buffer into the returned ``bytes``. Values without
large arrays are still best packed by msgpack in one call; for the others, the msgpack headers are
written as small ``bytes`` and the arrays' own memory is joined with them in a single copy.

The bytes are msgpack's: every subtree without large arrays is packed by the given msgpack packer,
and array maps come from a caller's function that writes exactly what the ``default`` hook would.
How does the writer know where the large arrays are without walking the value first? The packer's
``default`` hook raises :class:`GatherInstead` when it meets one, and the writer then gathers that
subtree itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

GATHER_ARRAY_BYTES = 4096
"""Arrays from this size on are worth gathering; msgpack's copies of smaller ones cost less."""
MAX_GATHER_DEPTH = 16
"""Subtrees deeper than this are packed by msgpack even when they hold large arrays."""


class GatherInstead(Exception):
    """Raised by a packer's ``default`` hook for an array the writer should gather itself."""


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


Pack = Callable[[Any], bytes]
"""A msgpack packer's ``pack`` method."""
ArrayParts = Callable[[np.ndarray[Any, Any]], "tuple[Any, ...] | None"]
"""``array_parts(array)``: the array's whole msgpack form as parts (headers as bytes, the payload as
a buffer), or ``None`` to let the packer (and its ``default`` hook) write it."""


class GatherWriter:
    """Writes values as msgpack: whole by the packer, or as gathered parts joined once.

    Args:
        gathering: packs a value, or raises :class:`GatherInstead` from its ``default`` hook when the
            value holds an array worth gathering; it must leave its buffer empty when it raises.
        plain: packs a value whole, never raising :class:`GatherInstead` (for deep subtrees).
        array_parts: see :data:`ArrayParts`.
    """

    def __init__(self, gathering: Pack, plain: Pack, array_parts: ArrayParts) -> None:
        self.pack = gathering
        """Packs a value whole, or raises :class:`GatherInstead`: then call :meth:`gather`."""
        self._gathering = gathering
        self._plain = plain
        self._array_parts = array_parts
        self._keys: dict[str, bytes] = {}

    def write(self, value: Any) -> bytes:
        """The msgpack bytes of ``value``."""
        try:
            return self.pack(value)
        except GatherInstead:
            return self.gather(value)

    def gather(self, value: Any) -> bytes:
        """The msgpack bytes of ``value``, its large arrays gathered from their own memory."""
        parts: list[Any] = []
        self._item(value, parts, 0)
        return b"".join(parts)

    def _item(self, item: Any, parts: list[Any], depth: int) -> None:
        kind = type(item)
        if kind is np.ndarray:
            array_parts = self._array_parts(item)
            parts += array_parts if array_parts is not None else (self._gathering(item),)
        elif kind is dict or kind is list or kind is tuple:
            if depth >= MAX_GATHER_DEPTH:
                parts.append(self._plain(item))
                return
            if depth:
                try:
                    parts.append(self._gathering(item))
                    return
                except GatherInstead:
                    pass
            self._gather(item, parts, depth)
        else:
            parts.append(self._gathering(item))

    def _gather(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], parts: list[Any], depth: int) -> None:
        if type(value) is dict:
            parts.append(map_header(len(value)))
            keys = self._keys
            items: Any = value.items()
        else:
            parts.append(array_header(len(value)))
            keys = None
            items = ((None, item) for item in value)
        array_parts, gathering = self._array_parts, self._gathering
        depth += 1
        for key, item in items:
            if keys is not None:
                packed = keys.get(key) if type(key) is str else None
                parts.append(packed if packed is not None else self._key(key))
            kind = type(item)
            if kind is np.ndarray:
                found = array_parts(item)
                if found is not None:
                    parts += found
                    continue
            elif kind is dict or kind is list or kind is tuple:
                self._item(item, parts, depth)
                continue
            parts.append(gathering(item))

    def _key(self, key: Any) -> bytes:
        packed = self._plain(key)
        if type(key) is str:
            if len(self._keys) >= 1024:
                self._keys.clear()
            self._keys[key] = packed
        return packed
