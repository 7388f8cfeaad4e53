"""Base64 for the json_numpy codec: ``pybase64`` (SIMD, ~50x faster) when installed, else ``binascii``.

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

DEFAULT = PYBASE64 or BINASCII
"""The fastest installed backend; the codec uses it unless told otherwise."""
