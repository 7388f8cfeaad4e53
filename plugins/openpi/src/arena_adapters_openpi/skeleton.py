"""Message skeletons: a decoded message minus its array payloads and float64 values.

A client sends the same observation layout at every step (same keys, dtypes, shapes and prompt)
and a server answers with the same reply layout; only array contents and timings change. A
:class:`Skeleton` records where those bytes lie in a message it was made from and everything
else, byte for byte. Another message of the same length whose other bytes are all equal decodes
to the same tree, with the arrays and floats read from its own bytes: that is what
:meth:`Skeleton.value_of` returns, without walking the message again.

Only messages whose other leaves are immutable (str, bin, int, float, bool, None, numpy scalars)
get a skeleton; lists and dicts are built afresh every time.
"""

from __future__ import annotations

import struct
from operator import methodcaller
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
_COPY = methodcaller("copy")
_CONSTANT_TYPES = frozenset({str, bytes, int, float, bool, type(None)})


class _Walk:
    """Flattens a decoded tree into a build plan, matching its leaves to the slots in order.

    The plan's values are numbered: the arrays first, then the floats, then the containers; each
    container is a copy of its template (its constants in place) and each fill puts one value into
    one container."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        arrays = [i for i, (_, _, tail) in enumerate(slots) if tail is not None]
        floats = [i for i, (_, _, tail) in enumerate(slots) if tail is None]
        self.number = {slot: n for n, slot in enumerate(arrays + floats)}
        self.matched = 0
        self.templates: list[dict[Any, Any] | list[Any]] = []
        self.fills: list[tuple[int, Any, int]] = []

    def plan(self, value: Any) -> int | None:
        """The number of ``value`` in the plan (a container or a slot), or None (no skeleton)."""
        kind = type(value)
        if kind is not dict and kind is not list:
            if self.matched < len(self.slots) and self.slots[self.matched][0] is value:
                self.matched += 1
                return self.number[self.matched - 1]
            return None
        template = value.copy()
        number = len(self.slots) + len(self.templates)
        self.templates.append(template)
        for where, item in value.items() if kind is dict else enumerate(value):
            if (type(item) in _CONSTANT_TYPES or isinstance(item, np.generic)) and not self._is_next_slot(item):
                continue
            part = self.plan(item)
            if part is None:
                return None
            template[where] = None
            self.fills.append((number, where, part))
        return number

    def _is_next_slot(self, value: Any) -> bool:
        return self.matched < len(self.slots) and self.slots[self.matched][0] is value


class Skeleton:
    """The skeleton of one message (see the module docstring)."""

    __slots__ = ("_limits_seen", "arrays", "depth", "fills", "fixed", "floats", "max_array_bytes", "max_ndim",
                 "root", "segments", "templates")

    def __init__(self, data: bytes, slots: list[Slot], walk: _Walk, root: int, depth: int) -> None:
        fixed, floats, start, end = ["<"], [">"], 0, 0
        for _, offset, tail in slots:
            size = 8 if tail is None else tail.nbytes
            fixed.append(f"{offset - start}s{size}x")
            start = offset + size
            if tail is None:
                floats.append(f"{offset - end}xd")
                end = offset + 8
        fixed.append(f"{len(data) - start}s")
        self.fixed = struct.Struct("".join(fixed)).unpack_from
        """Reads the bytes outside the slots of a message of the same length."""
        self.segments = self.fixed(data)
        self.floats = struct.Struct("".join(floats)).unpack_from if len(floats) > 1 else None
        self.arrays = tuple((offset, tail) for _, offset, tail in slots if tail is not None)
        self.templates = tuple(walk.templates)
        self.fills = tuple(walk.fills)
        self.root = root
        self.depth = depth
        self.max_ndim = max((len(tail.shape) for _, tail in self.arrays), default=0)
        self.max_array_bytes = max((tail.nbytes for _, tail in self.arrays), default=0)
        self._limits_seen: DecodeLimits | None = None

    @classmethod
    def of(cls, value: Any, data: bytes, slots: list[Slot], depth: int) -> Skeleton | None:
        """The skeleton of the message ``data``, which decoded to ``value`` with these ``slots``
        and nests maps and arrays ``depth`` deep; None where the message cannot have one."""
        if not slots or len(slots) > MAX_SLOTS:
            return None
        walk = _Walk(slots)
        root = walk.plan(value)
        if root is None or walk.matched != len(slots):
            return None
        skeleton = cls(data, slots, walk, root, depth)
        return skeleton if sum(map(len, skeleton.segments)) <= MAX_FIXED_BYTES else None

    def value_of(self, data: bytes, limits: DecodeLimits) -> Any:
        """The value of ``data`` (a message of the same length), or :data:`MISS` where it does not
        have this skeleton or is beyond ``limits``."""
        if limits is not self._limits_seen:
            if (self.depth > limits.max_depth or self.max_ndim > limits.max_ndim
                    or self.max_array_bytes > limits.max_array_bytes):
                return MISS
            self._limits_seen = limits
        if self.fixed(data) != self.segments:
            return MISS
        values: list[Any] = []
        for offset, tail in self.arrays:
            array: np.ndarray[Any, Any] = np.ndarray(tail.shape, tail.dtype, data, offset)
            if tail.unaligned and not array.flags.aligned:
                array = np.ndarray(tail.shape, tail.dtype, data[offset:offset + tail.nbytes])
            values.append(array)
        if self.floats is not None:
            values += self.floats(data)
        values += map(_COPY, self.templates)
        for container, where, part in self.fills:
            values[container][where] = values[part]
        return values[self.root]
