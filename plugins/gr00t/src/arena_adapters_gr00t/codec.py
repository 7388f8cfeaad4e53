"""The GR00T wire codec: msgpack with numpy arrays as ``.npy`` payloads.

:func:`encode` gives exactly the bytes of upstream's ``MsgSerializer.to_bytes`` (msgpack >= 1.0
defaults, ndarrays as ``{"__ndarray_class__": true, "as_npy": <np.save bytes>}``,
:class:`~arena_adapters_gr00t.modality.ModalityConfig` as its marker map). It writes msgpack
itself, emitting array data as buffers that are copied once, into the final frame.

:func:`decode` reads what upstream's ``MsgSerializer.from_bytes`` reads, plus the forms other
GR00T generations write: N1.7-era msgpack-numpy arrays (``{b"nd": true, b"type": "<f4", b"kind": b"",
b"shape": [...], b"data": raw}``), both ModalityConfig markers, ``as_json`` or ``as_dict`` payloads,
and N1.5's JSON-string ``as_json``. Object dtypes are refused: nothing is ever unpickled.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from arena_adapters_gr00t.modality import MARKERS, ModalityConfig, is_modality_config_map
from arena_adapters_gr00t.npy import NpyError, data_buffer, from_npy, header_bytes

NDARRAY_MARKER = "__ndarray_class__"
NPY_PAYLOAD = "as_npy"

_pack_double = struct.Struct(">Bd").pack
_MAX_DEPTH = 511  # msgpack's own nesting limit


class CodecError(ValueError):
    """A value cannot be encoded, or bytes cannot be decoded, as the GR00T protocol defines them."""


# --------------------------------------------------------------------------------------- encoding


def _int_bytes(value: int) -> bytes:
    if value >= 0:
        if value < 0x80:
            return bytes((value,))
        if value < 0x100:
            return b"\xcc" + bytes((value,))
        if value < 0x10000:
            return b"\xcd" + value.to_bytes(2, "big")
        if value < 0x100000000:
            return b"\xce" + value.to_bytes(4, "big")
        if value < 0x10000000000000000:
            return b"\xcf" + value.to_bytes(8, "big")
    else:
        if value >= -0x20:
            return (value & 0xFF).to_bytes(1, "big")
        if value >= -0x80:
            return b"\xd0" + value.to_bytes(1, "big", signed=True)
        if value >= -0x8000:
            return b"\xd1" + value.to_bytes(2, "big", signed=True)
        if value >= -0x80000000:
            return b"\xd2" + value.to_bytes(4, "big", signed=True)
        if value >= -0x8000000000000000:
            return b"\xd3" + value.to_bytes(8, "big", signed=True)
    raise OverflowError("Integer value out of range")


def _str_bytes(value: str) -> bytes:
    raw = value.encode("utf-8")
    n = len(raw)
    if n < 32:
        return bytes((0xA0 | n,)) + raw
    if n < 0x100:
        return b"\xd9" + bytes((n,)) + raw
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big") + raw
    if n < 0x100000000:
        return b"\xdb" + n.to_bytes(4, "big") + raw
    raise ValueError("String is too large")


def _bin_prefix(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + bytes((n,))
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xc6" + n.to_bytes(4, "big")
    raise ValueError("Bytes object is too large")


def _array_prefix(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _map_prefix(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 0x10000:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


_str_cache: dict[str, bytes] = {}
_STR_CACHE_LIMIT = 4096


def _cached_str(value: str) -> bytes:
    packed = _str_cache.get(value)
    if packed is None:
        packed = _str_bytes(value)
        if len(value) <= 64:
            if len(_str_cache) >= _STR_CACHE_LIMIT:
                _str_cache.clear()
            _str_cache[value] = packed
    return packed


_NDARRAY_HEAD = _map_prefix(2) + _str_bytes(NDARRAY_MARKER) + b"\xc3" + _str_bytes(NPY_PAYLOAD)


def _ndarray_segments(array: NDArray[Any], out: list[Any]) -> None:
    try:
        header = header_bytes(array)
    except NpyError as exc:
        raise CodecError(str(exc)) from None
    data = data_buffer(array)
    out.append(_NDARRAY_HEAD + _bin_prefix(len(header) + array.nbytes) + header)
    if array.nbytes:
        out.append(data if array.nbytes > 1024 else bytes(data))


class _Encoder:
    """Writes msgpack exactly as ``msgpack.packb(obj, default=MsgSerializer.encode_custom_classes)``."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: list[Any] = []

    def write(self, obj: Any, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            raise ValueError("recursion limit exceeded.")
        out = self.out
        kind = type(obj)
        if kind is str:
            out.append(_cached_str(obj))
        elif kind is dict:
            out.append(_map_prefix(len(obj)))
            for key, value in obj.items():
                self.write(key, depth + 1)
                self.write(value, depth + 1)
        elif kind is np.ndarray:
            _ndarray_segments(obj, out)
        elif obj is None:
            out.append(b"\xc0")
        elif obj is True:
            out.append(b"\xc3")
        elif obj is False:
            out.append(b"\xc2")
        elif kind is int:
            out.append(_int_bytes(obj))
        elif kind is float:
            out.append(_pack_double(0xCB, obj))
        elif kind is list or kind is tuple:
            out.append(_array_prefix(len(obj)))
            for item in obj:
                self.write(item, depth + 1)
        elif kind is bytes:
            out.append(_bin_prefix(len(obj)))
            out.append(obj)
        else:
            self._write_other(obj, depth)

    def _write_other(self, obj: Any, depth: int) -> None:
        # msgpack's order of checks for subclasses, then the upstream ``default`` hook, once.
        out = self.out
        if isinstance(obj, int):
            out.append(_int_bytes(int(obj)))
        elif isinstance(obj, float):
            out.append(_pack_double(0xCB, float(obj)))
        elif isinstance(obj, (bytes, bytearray)):
            out.append(_bin_prefix(len(obj)))
            out.append(bytes(obj))
        elif isinstance(obj, str):
            out.append(_str_bytes(str(obj)))
        elif isinstance(obj, dict):
            out.append(_map_prefix(len(obj)))
            for key, value in obj.items():
                self.write(key, depth + 1)
                self.write(value, depth + 1)
        elif isinstance(obj, (list, tuple)):
            out.append(_array_prefix(len(obj)))
            for item in obj:
                self.write(item, depth + 1)
        elif isinstance(obj, memoryview):
            raw = obj.tobytes()
            out.append(_bin_prefix(len(raw)))
            out.append(raw)
        elif isinstance(obj, np.ndarray):
            _ndarray_segments(obj, out)
        elif isinstance(obj, ModalityConfig):
            self.write(obj.to_wire(), depth)
        else:
            raise TypeError(f"can not serialize {type(obj).__name__!r} object")


def encode(obj: Any) -> bytes:
    """Encode ``obj`` as one GR00T message, byte-identical to upstream ``MsgSerializer.to_bytes``.

    Supported: None, bool, int, float, str, bytes, dict, list/tuple, numpy arrays (any non-object
    dtype and memory order) and :class:`~arena_adapters_gr00t.modality.ModalityConfig`.

    Raises:
        TypeError: an unsupported type (numpy scalars and torch tensors included, as upstream).
        CodecError: an object array (pickle is never used).
    """
    encoder = _Encoder()
    encoder.write(obj)
    return b"".join(encoder.out)


# --------------------------------------------------------------------------------------- decoding

_BIN_ND = b"nd"


def _msgpack_numpy_array(obj: dict[Any, Any]) -> Any:
    def get(key: str) -> Any:
        return obj.get(key.encode(), obj.get(key))

    kind = get("kind")
    if kind not in (None, b"", ""):
        raise CodecError(f"msgpack-numpy array of kind {kind!r} refused: only plain numeric arrays are decoded")
    type_name = get("type")
    if isinstance(type_name, bytes):
        type_name = type_name.decode()
    try:
        dtype = np.dtype(type_name)
    except TypeError as exc:
        raise CodecError(f"msgpack-numpy array with bad dtype {type_name!r}: {exc}") from None
    if dtype.hasobject:
        raise CodecError("msgpack-numpy object array refused (decoding it would need pickle)")
    data = get("data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("msgpack-numpy array without bin data")
    values = np.frombuffer(data, dtype=dtype)
    if not get("nd"):
        if values.size != 1:
            raise CodecError(f"msgpack-numpy scalar holds {values.size} values")
        return values[0]
    shape = tuple(int(n) for n in get("shape"))
    return values.reshape(shape)


def _make_hook(writable: bool) -> Callable[[dict[Any, Any]], Any]:
    def hook(obj: dict[Any, Any]) -> Any:
        if NDARRAY_MARKER in obj:
            try:
                return from_npy(obj[NPY_PAYLOAD], writable=writable)
            except KeyError:
                raise CodecError("ndarray map without 'as_npy' payload") from None
            except NpyError as exc:
                raise CodecError(str(exc)) from None
        if _BIN_ND in obj or ("nd" in obj and "data" in obj):
            array = _msgpack_numpy_array(obj)
            return array.copy() if writable and isinstance(array, np.ndarray) else array
        if (MARKERS[0] in obj or MARKERS[1] in obj or is_modality_config_map(obj)):
            try:
                return ModalityConfig.from_wire(obj)
            except (ValueError, KeyError, TypeError) as exc:
                raise CodecError(f"malformed ModalityConfig: {exc}") from None
        return obj

    return hook


_READONLY_HOOK = _make_hook(False)
_WRITABLE_HOOK = _make_hook(True)


def decode(data: Any, *, writable: bool = False) -> Any:
    """Decode one GR00T message (bytes or any buffer).

    Args:
        data: the frame.
        writable: give arrays their own writable memory, as upstream's ``np.load`` does; by default
            ``.npy`` arrays are read-only views on the decoded payload (no second copy).

    Raises:
        CodecError: malformed msgpack, arrays or configs, or an object dtype.
    """
    try:
        return msgpack.unpackb(data, object_hook=_WRITABLE_HOOK if writable else _READONLY_HOOK)
    except CodecError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CodecError(f"undecodable GR00T message: {type(exc).__name__}: {exc}") from None
