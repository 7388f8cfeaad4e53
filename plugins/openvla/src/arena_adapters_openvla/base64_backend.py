"""Base64 for the json_numpy codec: ``pybase64`` (SIMD, ~50x faster) for large data when installed,
``binascii`` for small data and otherwise.

Both give identical bytes. Decoding is strict first (the alphabet and padding that every json_numpy
writer produces); :func:`decode_lenient` accepts what ``base64.b64decode`` accepts (it drops
characters outside the alphabet), as json_numpy's decoder does.
"""

from __future__ import annotations

import binascii
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Buffer = Any
"""Anything with the buffer protocol (bytes, memoryview, a C-contiguous uint8 ndarray), or an ASCII str."""


@dataclass(frozen=True)
class Base64Backend:
    """One implementation of the three base64 operations the codec needs.

    Attributes:
        name: ``"pybase64"`` or ``"binascii"``.
        encode: raw bytes -> base64 bytes without a newline.
        decode_strict: base64 -> raw bytes; raises ``binascii.Error`` on anything but the strict
            alphabet with correct padding.
        decode_lenient: base64 -> raw bytes, dropping non-alphabet characters like ``base64.b64decode``.
    """

    name: str
    encode: Callable[[Buffer], bytes]
    decode_strict: Callable[[Buffer], bytes]
    decode_lenient: Callable[[Buffer], bytes]


def _binascii_strict(data: Buffer) -> bytes:
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(data, strict_mode=True)
    return binascii.a2b_base64(data)  # pragma: no cover - Python 3.10 has no strict mode


BINASCII = Base64Backend(
    name="binascii",
    encode=lambda data: binascii.b2a_base64(data, newline=False),
    decode_strict=_binascii_strict,
    decode_lenient=binascii.a2b_base64,
)
"""The standard-library backend (always available)."""


def _pybase64_backend() -> Base64Backend | None:
    try:
        import pybase64
    except ImportError:  # pragma: no cover - pybase64 is a declared dependency
        return None
    return Base64Backend(
        name="pybase64",
        encode=pybase64.b64encode,
        decode_strict=lambda data: pybase64.b64decode(data, validate=True),
        decode_lenient=lambda data: pybase64.b64decode(data, validate=False),
    )


PYBASE64 = _pybase64_backend()
"""The pybase64 backend, or ``None`` when pybase64 is not installed."""

GIL_RELEASE_MIN_BYTES = 1024
"""Data from this size on goes to pybase64, smaller data to binascii (see :func:`by_size`)."""


def by_size(small: Base64Backend, large: Base64Backend, threshold: int = GIL_RELEASE_MIN_BYTES) -> Base64Backend:
    """A backend that hands data under ``threshold`` bytes (or characters) to ``small`` and the rest
    to ``large``.

    pybase64 releases the GIL on every call, however small. A thread that releases it must get it
    back, and beside a thread busy in Python (the env's step, with requests in flight) that waits up
    to the interpreter's switch interval (5 ms): measured on a 2-core machine, decoding 8 bytes took
    about 49 us a call that way instead of 1 us, and 150 KB about 5 ms instead of 20 us. binascii
    holds the GIL and is as fast as pybase64 below about 1 KiB (a chunk reply's arrays), so small
    data goes there.
    """
    small_encode, small_strict, small_lenient = small.encode, small.decode_strict, small.decode_lenient
    large_encode, large_strict, large_lenient = large.encode, large.decode_strict, large.decode_lenient

    def encode(data: Buffer) -> bytes:
        return large_encode(data) if len(data) >= threshold else small_encode(data)

    def decode_strict(data: Buffer) -> bytes:
        return large_strict(data) if len(data) >= threshold else small_strict(data)

    def decode_lenient(data: Buffer) -> bytes:
        return large_lenient(data) if len(data) >= threshold else small_lenient(data)

    return Base64Backend(f"{small.name} under {threshold} bytes, else {large.name}", encode, decode_strict,
                         decode_lenient)


DEFAULT = by_size(BINASCII, PYBASE64) if PYBASE64 is not None else BINASCII
"""The fastest installed backend for each size; the codec uses it unless told otherwise."""
