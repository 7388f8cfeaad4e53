"""Decode limits: every decoder checks sizes, depth and dtypes before it allocates anything.

A hostile or broken peer must not make us allocate from a size it declares, recurse without
bound or build object arrays. :class:`DecodeLimits` holds the bounds; its ``check_*`` methods are
what codecs call at each point where a peer's declaration would turn into an allocation. Every
violation is a :class:`~arena_adapters.errors.ProtocolError` naming the limit and its option.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from arena_adapters.errors import ProtocolError
from arena_adapters.options import Option

MiB = 2**20

_CONTAINERS = frozenset({dict, list, tuple})

ALLOWED_DTYPE_KINDS = frozenset("biufcSUmM")
"""numpy dtype kinds a peer may declare: no object (``O``) and no void/structured (``V``)."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what a decoder accepts from a peer.

    Attributes:
        max_message_bytes: the largest message (reply on a client, request on a server).
        max_array_bytes: the largest single array.
        max_depth: the deepest nesting of maps and lists.
        max_header_bytes: the longest array header (numpy's own ``.npy`` limit is 10,000 bytes).
        max_int_digits: the longest integer literal in a text format (JSON).
        max_ndim: the most dimensions of an array.
    """

    max_message_bytes: int = 64 * MiB
    max_array_bytes: int = 64 * MiB
    max_depth: int = 64
    max_header_bytes: int = 10_000
    max_int_digits: int = 100
    max_ndim: int = 32

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **defaults: int) -> DecodeLimits:
        """Limits from the ``max_*`` entries of ``options`` (others are ignored), over ``defaults``."""
        names = {f.name for f in fields(cls)}
        values = {**defaults, **{k: v for k, v in options.items() if k in names and v is not None}}
        return cls(**{k: int(v) for k, v in values.items()})

    def with_message_cap(self, max_message_bytes: int) -> DecodeLimits:
        """The same limits with another message cap."""
        return replace(self, max_message_bytes=max_message_bytes)

    # ------------------------------------------------------------------------- checks

    def check_message(self, size: int, what: str = "message") -> None:
        """Refuse a message (or a declared message length) over ``max_message_bytes``."""
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"{what} of {size:,} bytes exceeds max_message_bytes={self.max_message_bytes:,}"
            )

    def check_depth(self, depth: int, what: str = "message") -> None:
        """Refuse nesting deeper than ``max_depth``."""
        if depth > self.max_depth:
            raise ProtocolError(f"{what} nests deeper than max_depth={self.max_depth}")

    def check_tree_depth(self, value: Any, what: str = "message") -> None:
        """Refuse a decoded value (dicts, lists, tuples) nested deeper than ``max_depth``, for parsers
        that cannot bound the depth while they read (msgpack stops only at 1024 levels). Walks level
        by level, without recursion: a few microseconds for a typical reply."""
        level = [value] if type(value) in _CONTAINERS else []
        depth = 0
        while level:
            depth += 1
            self.check_depth(depth, what)
            level = [
                child
                for node in level
                for child in (node.values() if type(node) is dict else node)
                if type(child) in _CONTAINERS
            ]

    def check_header(self, size: int, what: str = "array header") -> None:
        """Refuse an array header longer than ``max_header_bytes``."""
        if size > self.max_header_bytes:
            raise ProtocolError(f"{what} of {size:,} bytes exceeds max_header_bytes={self.max_header_bytes:,}")

    def check_int_digits(self, digits: int, what: str = "integer literal") -> None:
        """Refuse an integer literal longer than ``max_int_digits``."""
        if digits > self.max_int_digits:
            raise ProtocolError(f"{what} of {digits:,} digits exceeds max_int_digits={self.max_int_digits}")

    def dtype(self, spec: Any, what: str = "array") -> np.dtype[Any]:
        """The numpy dtype a peer declared, if it is a plain allowed type.

        Only a string descriptor (``"<f4"``, ``"float32"``, ``"|S3"``) or a ``np.dtype`` is read;
        object, void, structured and zero-size string types are refused.
        """
        if isinstance(spec, bytes):
            try:
                spec = spec.decode("ascii")
            except UnicodeDecodeError:
                raise ProtocolError(f"{what}: dtype {spec[:40]!r} is not ASCII") from None
        if not isinstance(spec, (str, np.dtype)) or (isinstance(spec, str) and len(spec) > 32):
            raise ProtocolError(f"{what}: dtype must be a short type string, got {_excerpt(spec)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy deprecations of odd type strings: refused, not printed
                dtype = np.dtype(spec)
        except (TypeError, ValueError, SyntaxError, OverflowError, Warning) as exc:
            raise ProtocolError(f"{what}: unreadable dtype {_excerpt(spec)}: {exc}") from None
        if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise ProtocolError(f"{what}: dtype {dtype.str!r} is not allowed (only bool, numbers, bytes, str, dates)")
        if dtype.itemsize == 0:
            raise ProtocolError(f"{what}: dtype {dtype.str!r} has no size")
        return dtype

    def shape(self, spec: Any, what: str = "array") -> tuple[int, ...]:
        """A declared shape: a list/tuple of at most ``max_ndim`` non-negative ints."""
        if not isinstance(spec, (list, tuple)) or len(spec) > self.max_ndim:
            raise ProtocolError(f"{what}: shape must be a list of at most {self.max_ndim} ints, got {_excerpt(spec)}")
        if not all(type(n) is int and n >= 0 for n in spec):
            raise ProtocolError(f"{what}: shape must hold non-negative ints, got {_excerpt(spec)}")
        return tuple(spec)

    def array_bytes(self, dtype: np.dtype[Any], shape: Sequence[int], what: str = "array") -> int:
        """The bytes an array of ``dtype`` and ``shape`` needs, refused over ``max_array_bytes``.

        Computed with Python ints, so a huge declared shape cannot overflow into a small size.
        """
        size = math.prod(shape) * dtype.itemsize
        if size > self.max_array_bytes:
            raise ProtocolError(
                f"{what}: {dtype.str} {list(shape)} needs {size:,} bytes, over max_array_bytes={self.max_array_bytes:,}"
            )
        return size

    def check_array(self, dtype: Any, shape: Any, data_length: int | None = None, what: str = "array") -> tuple[
        np.dtype[Any], tuple[int, ...]
    ]:
        """Check a declared array before anything is allocated for it.

        Returns the parsed ``(dtype, shape)``.

        Raises:
            ProtocolError: a disallowed dtype, a malformed shape, a size over ``max_array_bytes``, or
                ``data_length`` (the bytes that came with it) not equal to the declared size.
        """
        parsed_dtype = self.dtype(dtype, what)
        parsed_shape = self.shape(shape, what)
        size = self.array_bytes(parsed_dtype, parsed_shape, what)
        if data_length is not None and data_length != size:
            raise ProtocolError(
                f"{what}: {parsed_dtype.str} {list(parsed_shape)} needs {size:,} bytes, {data_length:,} came"
            )
        return parsed_dtype, parsed_shape


def limit_options(*, max_message_bytes: int = 64 * MiB, for_server: bool = False) -> tuple[Option, ...]:
    """The options that set :class:`DecodeLimits`, for a transport's or a server's record."""
    what = "request" if for_server else "reply"
    return (
        Option("max_message_bytes", int, max_message_bytes, f"largest {what} accepted, in bytes", minimum=1),
        Option("max_array_bytes", int, DecodeLimits.max_array_bytes, f"largest array in a {what}, in bytes",
               minimum=1),
        Option("max_depth", int, DecodeLimits.max_depth, f"deepest nesting of a {what}", minimum=1),
    )


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
