"""The ``.npy`` payload of GR00T's ``__ndarray_class__`` maps, written and read without ``np.save``/``np.load``.

The bytes are exactly what ``np.save(buffer, array, allow_pickle=False)`` writes: the magic
``\\x93NUMPY``, the format version, the header length, the header text
``{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }`` followed by numpy's spare
"growth" spaces and padding to a multiple of 64 bytes, then the raw data (in Fortran order for
Fortran-ordered arrays). Headers are cached per (dtype, shape, order), so encoding an array costs a
dict look-up plus handing over its buffer; decoding returns a view on the payload.

Object arrays are refused both ways: nothing here ever unpickles.
"""

from __future__ import annotations

import ast
import struct
from typing import Any

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

MAGIC = b"\x93NUMPY"
_ALIGN = 64
_GROWTH_AXIS_MAX_DIGITS = 21
_CACHE_LIMIT = 1024
_LENGTH_FORMATS = {1: "<H", 2: "<I", 3: "<I"}

_header_cache: dict[tuple[Any, ...], bytes] = {}
_parse_cache: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool]] = {}


class NpyError(ValueError):
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


def _parse_header(payload: Any) -> tuple[np.dtype[Any], tuple[int, ...], bool, int]:
    view = memoryview(payload)
    if len(view) < 10 or bytes(view[:6]) != MAGIC:
        raise NpyError("not a .npy payload: the magic string \\x93NUMPY is missing")
    version = view[6]
    if version not in _LENGTH_FORMATS or view[7] != 0:
        raise NpyError(f"unsupported .npy format version {view[6]}.{view[7]}")
    length_format = _LENGTH_FORMATS[version]
    start = 8 + struct.calcsize(length_format)
    (header_length,) = struct.unpack_from(length_format, view, 8)
    end = start + header_length
    if len(view) < end:
        raise NpyError(f".npy header claims {header_length} bytes, payload has {len(view) - start}")
    raw = bytes(view[start:end])
    parsed = _parse_cache.get(raw)
    if parsed is None:
        parsed = _parse_header_text(raw, "utf8" if version == 3 else "latin1")
        if len(_parse_cache) >= _CACHE_LIMIT:
            _parse_cache.clear()
        _parse_cache[raw] = parsed
    return (*parsed, end)


def _parse_header_text(raw: bytes, encoding: str) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    try:
        header = ast.literal_eval(raw.decode(encoding))
    except (ValueError, SyntaxError, UnicodeDecodeError) as exc:
        raise NpyError(f"unreadable .npy header {raw[:80]!r}: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpyError(f".npy header must hold exactly descr, fortran_order and shape, got {header!r}")
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NpyError(f".npy header shape must be a tuple of ints, got {shape!r}")
    if not isinstance(fortran, bool):
        raise NpyError(f".npy header fortran_order must be a bool, got {fortran!r}")
    try:
        dtype = npy_format.descr_to_dtype(header["descr"])  # type: ignore[no-untyped-call]
    except (TypeError, ValueError) as exc:
        raise NpyError(f".npy header descr {header['descr']!r} is not a dtype: {exc}") from None
    if dtype.hasobject:
        raise NpyError("the payload holds an object array; refused (decoding it would need pickle)")
    return dtype, shape, fortran


def from_npy(payload: Any, *, writable: bool = False) -> NDArray[Any]:
    """Read a ``.npy`` payload like ``np.load(BytesIO(payload), allow_pickle=False)``.

    Args:
        payload: the bytes (or any buffer) of the ``.npy`` file.
        writable: return a writable copy (as ``np.load`` does); by default the array is a read-only
            view on ``payload``.

    Raises:
        NpyError: a malformed payload, truncated data, or an object dtype.
    """
    dtype, shape, fortran, offset = _parse_header(payload)
    count = 1
    for n in shape:
        count *= n
    needed = count * dtype.itemsize
    available = len(memoryview(payload)) - offset
    if available < needed:
        raise NpyError(f".npy data truncated: {shape} {dtype.str} needs {needed} bytes, payload has {available}")
    if count == 0 or dtype.itemsize == 0:
        array = np.zeros(shape, dtype, order="F" if fortran else "C")
        return array
    flat = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    if writable:
        return array.copy(order="F" if fortran else "C")
    return array
