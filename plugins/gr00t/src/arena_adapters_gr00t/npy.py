"""The ``.npy`` payload of GR00T's ``__ndarray_class__`` maps, written and read without ``np.save``/``np.load``.

The bytes are exactly what ``np.save(buffer, array, allow_pickle=False)`` writes: the magic
``\\x93NUMPY``, the format version, the header length, the header text
``{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }`` followed by numpy's spare
"growth" spaces and padding to a multiple of 64 bytes, then the raw data (in Fortran order for
Fortran-ordered arrays). Headers are cached per (dtype, shape, order), so encoding an array costs a
dict look-up plus handing over its buffer; decoding returns a view on the payload.

Object arrays are refused both ways: nothing here ever unpickles. A payload from a peer is read
within :class:`~arena_adapters.transport.DecodeLimits`: the header's length is capped
(``max_header_bytes``) and read by a strict parser of the dict literal numpy writes (never
evaluated), its dtype must be on the allow-list and its declared size must fit ``max_array_bytes``
and equal the data that came, all before anything is allocated.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from arena_adapters.errors import ProtocolError
from arena_adapters.transport.limits import DecodeLimits

MAGIC = b"\x93NUMPY"
_ALIGN = 64
_GROWTH_AXIS_MAX_DIGITS = 21
_CACHE_LIMIT = 1024
_LENGTH_FORMATS = {1: "<H", 2: "<I", 3: "<I"}

_header_cache: dict[tuple[Any, ...], bytes] = {}
_parse_cache: dict[bytes, tuple[DecodeLimits, _Header]] = {}
_DEFAULT_LIMITS = DecodeLimits()


class NpyError(ProtocolError, ValueError):
    """A payload is not a valid ``.npy`` file, or holds an array that may not be sent (object dtype)."""


def _descr(dtype: np.dtype[Any]) -> Any:
    if dtype.names is None and dtype.subdtype is None:
        return dtype.str
    return npy_format.dtype_to_descr(dtype)  # type: ignore[no-untyped-call]


def _wrap(text: str) -> bytes:
    """Prefix and pad a header text as numpy does, picking the oldest format version that fits."""
    for version, encoding in ((1, "latin1"), (2, "latin1"), (3, "utf8")):
        try:
            raw = text.encode(encoding)
        except UnicodeEncodeError:
            continue
        length_format = _LENGTH_FORMATS[version]
        header_length = len(raw) + 1
        padding = _ALIGN - ((len(MAGIC) + 2 + struct.calcsize(length_format) + header_length) % _ALIGN)
        try:
            prefix = MAGIC + bytes((version, 0)) + struct.pack(length_format, header_length + padding)
        except struct.error:
            continue
        return prefix + raw + b" " * padding + b"\n"
    raise NpyError("array header too large for any .npy format version")


def header_bytes(array: NDArray[Any]) -> bytes:
    """The ``.npy`` preamble (magic, version, length, header text, padding) ``np.save`` writes for ``array``.

    Raises:
        NpyError: the array has an object dtype (``np.save`` refuses those without pickle).
    """
    dtype = array.dtype
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    key = (dtype, array.shape, fortran)
    cached = _header_cache.get(key)
    if cached is not None:
        return cached
    if dtype.hasobject:
        raise NpyError("object arrays cannot be sent: the GR00T protocol forbids pickle (allow_pickle=False)")
    shape = array.shape
    text = f"{{'descr': {_descr(dtype)!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
    if shape:
        text += " " * (_GROWTH_AXIS_MAX_DIGITS - len(repr(shape[-1 if fortran else 0])))
    header = _wrap(text)
    if len(_header_cache) >= _CACHE_LIMIT:
        _header_cache.clear()
    _header_cache[key] = header
    return header


def data_buffer(array: NDArray[Any]) -> Any:
    """The array's data as a flat uint8 buffer, in the order its header declares (no copy when the
    array is C- or Fortran-contiguous)."""
    if array.nbytes == 0:
        return b""
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
    elif array.flags.f_contiguous:
        flat = array.T.reshape(-1)
    else:
        flat = np.ascontiguousarray(array).reshape(-1)
    return flat.view(np.uint8)


def to_npy(array: NDArray[Any]) -> bytes:
    """The complete ``.npy`` file of ``array``, byte-identical to ``np.save(..., allow_pickle=False)``."""
    return b"".join((header_bytes(array), data_buffer(array)))


class _Header(NamedTuple):
    """A checked ``.npy`` header: what an array of it needs."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran: bool
    items: int
    nbytes: int
    text: bool


def _parse_header(view: memoryview, limits: DecodeLimits) -> tuple[_Header, int]:
    """The checked header of a ``.npy`` payload and the offset of its data (cached per header
    text and limits: a stream of arrays of one layout parses each header once)."""
    if len(view) < 10 or view[:6] != MAGIC:
        raise NpyError("not a .npy payload: the magic string \\x93NUMPY is missing")
    version = view[6]
    if version not in _LENGTH_FORMATS or view[7] != 0:
        raise NpyError(f"unsupported .npy format version {view[6]}.{view[7]}")
    length_format = _LENGTH_FORMATS[version]
    start = 8 + struct.calcsize(length_format)
    if len(view) < start:
        raise NpyError(f".npy payload of {len(view)} bytes ends inside its header length")
    (header_length,) = struct.unpack_from(length_format, view, 8)
    if header_length > limits.max_header_bytes:
        limits.check_header(header_length, ".npy header")
    end = start + header_length
    if len(view) < end:
        raise NpyError(f".npy header claims {header_length} bytes, payload has {len(view) - start}")
    raw = bytes(view[start:end])
    cached = _parse_cache.get(raw)
    if cached is not None and (cached[0] is limits or cached[0] == limits):
        return cached[1], end
    descr, fortran, shape = parse_header_text(raw, "utf8" if version == 3 else "latin1", limits)
    dtype, shape = limits.check_array(descr, shape, what=".npy array")
    count = _count(shape)
    header = _Header(dtype, shape, fortran, count, count * dtype.itemsize, dtype.kind == "U")
    if len(_parse_cache) >= _CACHE_LIMIT:
        _parse_cache.clear()
    _parse_cache[raw] = (limits, header)
    return header, end


_KEY = re.compile(r"""\s*(['"])(descr|fortran_order|shape)\1\s*:\s*""")
_DESCR = re.compile(r"""(['"])([^'"\\]{1,32})\1""")
_BOOL = re.compile(r"True|False")
_SHAPE = re.compile(r"\(([0-9,\s]*)\)")
_SEPARATOR = re.compile(r"\s*(,|\})")
_OPEN = re.compile(r"\s*\{")
_CLOSE = re.compile(r"\s*\}")


def parse_header_text(raw: bytes, encoding: str, limits: DecodeLimits) -> tuple[str, bool, tuple[int, ...]]:
    """``(descr, fortran_order, shape)`` from a ``.npy`` header dict literal, read by a strict parser.

    Accepts what numpy writes (``{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }``
    and padding), in any key order, with a plain dtype string only; integer literals are bounded by
    ``limits.max_int_digits`` and the dimensions by ``limits.max_ndim``. Never evaluates anything.

    Raises:
        NpyError: anything else.
    """
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise NpyError(f".npy header {raw[:60]!r} is not {encoding} text") from None
    found: dict[str, Any] = {}
    opening = _OPEN.match(text)
    if opening is None:
        raise NpyError(f".npy header must be a dict literal, got {_excerpt(text)}")
    position = opening.end()
    while True:
        closing = _CLOSE.match(text, position)
        if closing is not None:
            position = closing.end()
            break
        key_match = _KEY.match(text, position)
        if key_match is None:
            raise NpyError(f".npy header: expected 'descr', 'fortran_order' or 'shape' at {_excerpt(text[position:])}")
        key = key_match[2]
        if key in found:
            raise NpyError(f".npy header names {key!r} twice")
        found[key], position = _VALUE_READERS[key](text, key_match.end(), limits)
        separator = _SEPARATOR.match(text, position)
        if separator is None:
            raise NpyError(f".npy header: expected ',' or '}}' at {_excerpt(text[position:])}")
        position = separator.end()
        if separator[1] == "}":
            break
    if text[position:].strip(" \t\r\n\x00"):
        raise NpyError(f".npy header has text after its dict: {_excerpt(text[position:])}")
    if set(found) != {"descr", "fortran_order", "shape"}:
        raise NpyError(f".npy header must hold descr, fortran_order and shape, got {sorted(found)}")
    return found["descr"], found["fortran_order"], found["shape"]


def _read_descr(text: str, position: int, limits: DecodeLimits) -> tuple[str, int]:
    match = _DESCR.match(text, position)
    if match is None:
        raise NpyError(f".npy header descr must be a short dtype string, got {_excerpt(text[position:])}")
    return match[2], match.end()


def _read_bool(text: str, position: int, limits: DecodeLimits) -> tuple[bool, int]:
    match = _BOOL.match(text, position)
    if match is None:
        raise NpyError(f".npy header fortran_order must be True or False, got {_excerpt(text[position:])}")
    return match[0] == "True", match.end()


def _read_shape(text: str, position: int, limits: DecodeLimits) -> tuple[tuple[int, ...], int]:
    match = _SHAPE.match(text, position, position + 2 + limits.max_ndim * (limits.max_int_digits + 4))
    if match is None:
        raise NpyError(f".npy header shape must be a tuple of ints, got {_excerpt(text[position:])}")
    items = [item.strip() for item in match[1].split(",")]
    if items and items[-1] == "":
        items.pop()  # a trailing comma, as in (3,)
    if len(items) > limits.max_ndim:
        raise NpyError(f".npy header shape has {len(items)} dimensions, over max_ndim={limits.max_ndim}")
    dims = []
    for item in items:
        if not item.isdigit() or not item.isascii():
            raise NpyError(f".npy header shape must be a tuple of ints, got {_excerpt(match[0])}")
        limits.check_int_digits(len(item), ".npy header shape")
        dim = int(item)
        if dim > sys.maxsize:
            raise NpyError(f".npy header shape {_excerpt(match[0])} has a dimension numpy cannot index")
        dims.append(dim)
    if len(dims) == 1 and "," not in match[1]:
        raise NpyError(f".npy header shape must be a tuple, got {_excerpt(match[0])}")
    return tuple(dims), match.end()


_VALUE_READERS: dict[str, Callable[[str, int, DecodeLimits], tuple[Any, int]]] = {
    "descr": _read_descr, "fortran_order": _read_bool, "shape": _read_shape,
}


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def from_npy(payload: Any, *, writable: bool = False, limits: DecodeLimits | None = None) -> NDArray[Any]:
    """Read a ``.npy`` payload like ``np.load(BytesIO(payload), allow_pickle=False)``, within ``limits``.

    Args:
        payload: the bytes (or any buffer) of the ``.npy`` file.
        writable: return a writable copy (as ``np.load`` does); by default the array is a read-only
            view on ``payload``.
        limits: the decode limits (default: :class:`DecodeLimits` defaults).

    Raises:
        NpyError: a malformed payload, a header or array over the limits, data of another length
            than declared, or a dtype off the allow-list (object, void, ...).
    """
    view = memoryview(payload)
    try:
        header, offset = _parse_header(view, limits or _DEFAULT_LIMITS)
    except NpyError:
        raise
    except ProtocolError as error:
        raise NpyError(error.message) from None
    dtype, shape, fortran = header.dtype, header.shape, header.fortran
    available = len(view) - offset
    if available != header.nbytes:
        raise NpyError(f".npy data of {available:,} bytes, but {dtype.str} {list(shape)} needs {header.nbytes:,}")
    if header.nbytes == 0:
        return np.zeros(shape, dtype, order="F" if fortran else "C")
    flat = np.frombuffer(payload, dtype=dtype, count=header.items, offset=offset)
    if header.text:
        check_code_points(flat)
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    if writable:
        return array.copy(order="F" if fortran else "C")
    return array


def check_code_points(values: NDArray[Any]) -> None:
    """Refuse a ``U`` (UTF-32) array holding values past U+10FFFF, which numpy cannot turn into str.

    Raises:
        NpyError: such a code point.
    """
    if values.dtype.kind == "U" and values.size and int(values.view(np.uint32).max()) > 0x10FFFF:
        raise NpyError(f"{values.dtype.str} array holds a value that is not a Unicode code point")


def _count(shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count
