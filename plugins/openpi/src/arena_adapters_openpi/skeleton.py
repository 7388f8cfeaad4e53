"""Message skeletons: a decoded message minus its array payloads and float64 values.

A client sends the same observation layout at every step (same keys, dtypes, shapes and prompt)
and a server answers with the same reply layout; only array contents and timings change. A
:class:`Skeleton` records where those bytes lie in a message it was made from and everything
else, byte for byte. Another message of the same length whose other bytes are all equal decodes
to the same tree, with the arrays and floats read from its own bytes: that is what
:meth:`Skeleton.build` returns, without walking the message again.

Only messages whose other leaves are immutable (str, bin, int, float, bool, None, numpy scalars)
get a skeleton; lists and dicts are built afresh every time.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from arena_adapters.transport import DecodeLimits
from arena_adapters_openpi.reader import Slot

MAX_FIXED_BYTES = 16 * 1024
"""Messages with more bytes than this outside their arrays and floats get no skeleton."""

MISS: Any = object()
"""What :meth:`Skeleton.value_of` returns for a message without that skeleton."""
MAX_SLOTS = 1024
"""Messages with more arrays and floats than this get no skeleton."""
_F64 = struct.Struct(">d").unpack_from
_CONSTANT_TYPES = frozenset({str, bytes, int, float, bool, type(None)})


class _Node:
    """How to build one dict or list: a copy of its template (the constants in place), then the
    values from slots and the child containers put in."""

    __slots__ = ("child_fills", "slot_fills", "template")

    def __init__(self, template: dict[Any, Any] | list[Any], slot_fills: tuple[tuple[Any, int], ...],
                 child_fills: tuple[tuple[Any, _Node], ...]) -> None:
        self.template = template
        self.slot_fills = slot_fills
        self.child_fills = child_fills


class _Walk:
    """Turns a decoded tree into :class:`_Node` recipes, matching its leaves to the slots."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self.matched = 0
        self.depth = 0

    def recipe(self, value: Any, depth: int) -> _Node | int | None:
        """The recipe of a container, the slot number of a slot leaf, or None (no skeleton)."""
        kind = type(value)
        if kind is dict or kind is list:
            self.depth = max(self.depth, depth)
            template = value.copy()
            slot_fills: list[tuple[Any, int]] = []
            child_fills: list[tuple[Any, _Node]] = []
            for where, item in value.items() if kind is dict else enumerate(value):
                if (type(item) in _CONSTANT_TYPES or isinstance(item, np.generic)) and not self._is_next_slot(item):
                    continue
                part = self.recipe(item, depth + 1)
                if part is None:
                    return None
                template[where] = None
                if isinstance(part, int):
                    slot_fills.append((where, part))
                else:
                    child_fills.append((where, part))
            return _Node(template, tuple(slot_fills), tuple(child_fills))
        if self._is_next_slot(value):
            self.matched += 1
            return self.matched - 1
        return None

    def _is_next_slot(self, value: Any) -> bool:
        return self.matched < len(self.slots) and self.slots[self.matched][0] is value


class Skeleton:
    """The skeleton of one message (see the module docstring)."""

    __slots__ = ("_limits_seen", "depth", "max_array_bytes", "max_ndim", "root", "segments", "slots")

    def __init__(self, segments: tuple[tuple[int, bytes], ...], slots: tuple[tuple[int, Any], ...], root: _Node | int,
                 depth: int) -> None:
        self.segments = segments
        self.slots = slots
        self.root = root
        self.depth = depth
        tails = [tail for _, tail in slots if tail is not None]
        self.max_ndim = max((len(tail.shape) for tail in tails), default=0)
        self.max_array_bytes = max((tail.nbytes for tail in tails), default=0)
        self._limits_seen: DecodeLimits | None = None

    @classmethod
    def of(cls, value: Any, data: bytes, slots: list[Slot]) -> Skeleton | None:
        """The skeleton of the message ``data``, which decoded to ``value`` with these ``slots``;
        None where the message cannot have one."""
        if not slots or len(slots) > MAX_SLOTS:
            return None
        walk = _Walk(slots)
        root = walk.recipe(value, 1)
        if root is None or walk.matched != len(slots):
            return None
        segments = []
        start = 0
        for _, offset, tail in slots:
            segments.append((start, data[start:offset]))
            start = offset + (8 if tail is None else tail.nbytes)
        segments.append((start, data[start:]))
        if sum(len(segment) for _, segment in segments) > MAX_FIXED_BYTES:
            return None
        return cls(tuple(segments), tuple((offset, tail) for _, offset, tail in slots), root, walk.depth)

    def value_of(self, data: bytes, limits: DecodeLimits) -> Any:
        """The value of ``data`` (a message of the same length), or :data:`MISS` where it does not
        have this skeleton or is beyond ``limits``."""
        if limits is not self._limits_seen:
            if (self.depth > limits.max_depth or self.max_ndim > limits.max_ndim
                    or self.max_array_bytes > limits.max_array_bytes):
                return MISS
            self._limits_seen = limits
        for offset, segment in self.segments:
            if not data.startswith(segment, offset):
                return MISS
        values: list[Any] = []
        for offset, tail in self.slots:
            if tail is None:
                values.append(_F64(data, offset)[0])
                continue
            array: np.ndarray[Any, Any] = np.ndarray(tail.shape, tail.dtype, data, offset)
            if tail.unaligned and not array.flags.aligned:
                array = np.ndarray(tail.shape, tail.dtype, data[offset:offset + tail.nbytes])
            values.append(array)
        root = self.root
        return values[root] if isinstance(root, int) else _build(root, values)


def _build(node: _Node, slots: list[Any]) -> Any:
    built = node.template.copy()
    for where, index in node.slot_fills:
        built[where] = slots[index]
    for where, child in node.child_fills:
        built[where] = _build(child, slots)
    return built
