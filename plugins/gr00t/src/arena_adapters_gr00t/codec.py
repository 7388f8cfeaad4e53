"""The GR00T wire codec: msgpack with numpy arrays in one of two forms.

:func:`encode` gives exactly the bytes of upstream's ``MsgSerializer.to_bytes`` (msgpack >= 1.0
defaults, ndarrays as ``{"__ndarray_class__": true, "as_npy": <np.save bytes>}``,
:class:`~arena_adapters_gr00t.modality.ModalityConfig` as its marker map), or, with
``arrays="nd"``, arrays as N1.7-era servers read them (msgpack-numpy style: a map with the bin keys
``nd`` (true), ``type`` (the dtype string), ``kind`` (empty bin), ``shape`` (array of ints) and
``data`` (the raw C-order bytes), in that order). It writes msgpack itself, emitting array data as
buffers that are copied once, into the final frame.

:func:`decode` reads what upstream's ``MsgSerializer.from_bytes`` reads, plus the forms other
GR00T generations write: N1.7-era msgpack-numpy arrays (``{b"nd": true, b"type": "<f4", b"kind": b"",
b"shape": [...], b"data": raw}``), both ModalityConfig markers, ``as_json`` or ``as_dict`` payloads,
and N1.5's JSON-string ``as_json``. Object dtypes are refused: nothing is ever unpickled. In a
large message the arrays' payloads are read in place (:mod:`arena_adapters_gr00t.payloads`): arrays
are read-only views of the frame itself, not of a copy msgpack made.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from arena_adapters.errors import ProtocolError
from arena_adapters.transport.limits import DecodeLimits
from arena_adapters_gr00t.modality import MARKER_N16, MARKER_N17, ModalityConfig, is_modality_config_map
from arena_adapters_gr00t.npy import NpyError, check_code_points, data_buffer, from_npy, header_bytes
from arena_adapters_gr00t.payloads import lift, placeholder_hook

NDARRAY_MARKER = "__ndarray_class__"
NPY_PAYLOAD = "as_npy"

NPY = "npy"
"""Arrays as ``{"__ndarray_class__": true, "as_npy": <.npy bytes>}`` (N1.6 servers and older)."""
ND = "nd"
"""Arrays as msgpack-numpy maps ``{b"nd": true, b"type", b"kind", b"shape", b"data"}`` (N1.7-era servers)."""
ARRAY_ENCODINGS = (NPY, ND)

_pack_double = struct.Struct(">Bd").pack
_MAX_DEPTH = 511  # msgpack's own nesting limit


class CodecError(ProtocolError, ValueError):
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


def _bin_key(key: bytes) -> bytes:
    return _bin_prefix(len(key)) + key


_ND_HEAD = _map_prefix(5) + _bin_key(b"nd") + b"\xc3" + _bin_key(b"type")
_ND_KIND_SHAPE = _bin_key(b"kind") + _bin_prefix(0) + _bin_key(b"shape")
_ND_DATA = _bin_key(b"data")
_nd_head_cache: dict[tuple[Any, ...], bytes] = {}


def _nd_segments(array: NDArray[Any], out: list[Any]) -> None:
    dtype = array.dtype
    key = (dtype, array.shape)
    head = _nd_head_cache.get(key)
    if head is None:
        if dtype.hasobject or dtype.kind == "V":
            raise CodecError(f"{dtype} arrays cannot be sent as msgpack-numpy maps (no object or structured dtypes)")
        head = b"".join((_ND_HEAD, _str_bytes(dtype.str), _ND_KIND_SHAPE, _array_prefix(array.ndim),
                         *(_int_bytes(n) for n in array.shape), _ND_DATA, _bin_prefix(array.nbytes)))
        if len(_nd_head_cache) >= _STR_CACHE_LIMIT:
            _nd_head_cache.clear()
        _nd_head_cache[key] = head
    out.append(head)
    if array.nbytes:
        data = (array if array.flags.c_contiguous else np.ascontiguousarray(array)).reshape(-1).view(np.uint8)
        out.append(data if array.nbytes > 1024 else bytes(data))


class _Encoder:
    """Writes msgpack exactly as ``msgpack.packb(obj, default=MsgSerializer.encode_custom_classes)``,
    arrays in the chosen form."""

    __slots__ = ("array", "out")

    def __init__(self, arrays: str = NPY) -> None:
        self.out: list[Any] = []
        if arrays not in ARRAY_ENCODINGS:
            raise ValueError(f"array encoding must be one of {list(ARRAY_ENCODINGS)}, got {arrays!r}")
        self.array = _nd_segments if arrays == ND else _ndarray_segments

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
            self.array(obj, out)
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
            self.array(obj, out)
        elif isinstance(obj, ModalityConfig):
            self.write(obj.to_wire(), depth)
        else:
            raise TypeError(f"can not serialize {type(obj).__name__!r} object")


def encode(obj: Any, *, arrays: str = NPY) -> bytes:
    """Encode ``obj`` as one GR00T message, byte-identical to upstream ``MsgSerializer.to_bytes``
    (``arrays="npy"``), or with arrays as msgpack-numpy maps for N1.7-era servers (``arrays="nd"``).

    Supported: None, bool, int, float, str, bytes, dict, list/tuple, numpy arrays (any non-object
    dtype and memory order) and :class:`~arena_adapters_gr00t.modality.ModalityConfig`.

    Raises:
        TypeError: an unsupported type (numpy scalars and torch tensors included, as upstream).
        CodecError: an object array (pickle is never used).
    """
    encoder = _Encoder(arrays)
    encoder.write(obj)
    return b"".join(encoder.out)


FRAME_BUFFER_BYTES = 1 << 20
"""Frames of at least this size are assembled by :func:`encode_frame` in numpy-allocated memory."""


def encode_frame(obj: Any, *, arrays: str = NPY) -> bytes | memoryview:
    """:func:`encode`'s bytes, for sending: a frame of :data:`FRAME_BUFFER_BYTES` or more is assembled
    in one numpy-allocated buffer and returned as a read-only memoryview of it.

    The content is the same; only the memory differs. Filling a fresh ``bytes`` of a large camera
    batch costs a page fault per 4 KiB page, numpy's allocation gets huge pages where the kernel
    grants them (see :mod:`arena_adapters.host_memory`): about 4x less for a 40 MB request. The
    buffer is never reused, so a zero-copy send may hold on to it.

    Raises:
        TypeError, CodecError: as :func:`encode`.
    """
    encoder = _Encoder(arrays)
    encoder.write(obj)
    segments = encoder.out
    total = sum(len(segment) for segment in segments)
    if total < FRAME_BUFFER_BYTES:
        return b"".join(segments)
    frame = np.empty(total, dtype=np.uint8)
    position = 0
    pending: list[bytes] = []
    for segment in segments:
        if type(segment) is bytes:
            pending.append(segment)
            continue
        if pending:
            position = _put(frame, position, b"".join(pending))
            pending.clear()
        position = _put(frame, position, segment)
    if pending:
        position = _put(frame, position, b"".join(pending))
    return frame.data.toreadonly()


def _put(frame: NDArray[np.uint8], position: int, segment: Any) -> int:
    data = np.frombuffer(segment, dtype=np.uint8)
    end = position + data.size
    frame[position:end] = data
    return end


# --------------------------------------------------------------------------------------- decoding

_ND_FIELDS = (b"nd", b"type", b"kind", b"shape", b"data")
_MAX_CONTAINER_ITEMS = 1 << 20


def _field(obj: dict[Any, Any], key: bytes) -> Any:
    value = obj.get(key)
    return obj.get(key.decode()) if value is None else value


def _msgpack_numpy_array(obj: dict[Any, Any], limits: DecodeLimits, writable: bool) -> Any:
    kind = _field(obj, b"kind")
    if kind not in (None, b"", ""):
        raise CodecError(f"msgpack-numpy array of kind {kind!r} refused: only plain numeric arrays are decoded")
    data = _field(obj, b"data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"msgpack-numpy array without bin data (got {type(data).__name__})")
    is_array = _field(obj, b"nd")
    shape = _field(obj, b"shape") if is_array else []
    dtype, dims = limits.check_array(_field(obj, b"type"), shape, len(data), "msgpack-numpy array")
    if any(n > sys.maxsize for n in dims):
        raise CodecError(f"msgpack-numpy array shape {list(dims)} has a dimension numpy cannot index")
    if not data:
        return np.zeros(dims, dtype)
    values = np.frombuffer(data, dtype=dtype)
    check_code_points(values)
    if not is_array:
        return values[0]
    array = values.reshape(dims)
    return array.copy() if writable else array


def _make_hook(writable: bool, limits: DecodeLimits, forms: frozenset[str],
               seen: set[str] | None, lifted: bool = False) -> Callable[[dict[Any, Any]], Any]:
    npy, nd = NPY in forms, ND in forms

    def hook(obj: dict[Any, Any]) -> Any:
        if npy and NDARRAY_MARKER in obj:
            payload = obj.get(NPY_PAYLOAD)
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise CodecError(f"ndarray map without a bin 'as_npy' payload (got {type(payload).__name__})")
            if seen is not None:
                seen.add(NPY)
            return from_npy(payload, writable=writable, limits=limits)
        if nd and (b"nd" in obj or ("nd" in obj and "data" in obj)):
            if seen is not None:
                seen.add(ND)
            return _msgpack_numpy_array(obj, limits, writable)
        if lifted:  # payloads that are no array's: bytes, as msgpack gives them
            for key, item in obj.items():
                if type(item) is memoryview:
                    obj[key] = item.tobytes()
        if MARKER_N16 in obj or MARKER_N17 in obj or is_modality_config_map(obj):
            try:
                config = ModalityConfig.from_wire(obj, limits)
            except ProtocolError:
                raise
            except Exception as exc:  # a hostile config must not escape untyped
                raise CodecError(f"malformed ModalityConfig: {type(exc).__name__}: {exc}") from None
            if seen is not None:
                seen.add(config.form.marker)
            return config
        return obj

    return hook


def _check_depth(value: Any, limits: DecodeLimits) -> None:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            limits.check_depth(depth, "GR00T message")
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))


_DEFAULT_LIMITS = DecodeLimits()
_ALL_FORMS = frozenset(ARRAY_ENCODINGS)


def decode(data: Any, *, writable: bool = False, limits: DecodeLimits | None = None,
           arrays: Iterable[str] = ARRAY_ENCODINGS, seen: set[str] | None = None) -> Any:
    """Decode one GR00T message (bytes or any buffer) within ``limits``.

    Args:
        data: the frame.
        writable: give arrays their own writable memory, as upstream's ``np.load`` does; by default
            arrays are read-only views on the frame (no second copy).
        limits: the decode limits (default: :class:`DecodeLimits` defaults); every declared size,
            dtype and depth is checked before anything is allocated for it.
        arrays: the array forms read as arrays (``"npy"``, ``"nd"``); a server of one era reads
            only its own, and the other form reaches its handler as a plain map (as upstream).
        seen: if given, the array forms and ModalityConfig markers met are added to it.

    Raises:
        CodecError: malformed msgpack, arrays or configs, or anything over the limits.
    """
    limits = limits or _DEFAULT_LIMITS
    forms = _ALL_FORMS if arrays is ARRAY_ENCODINGS else frozenset(arrays)
    size = len(memoryview(data))
    items = min(size, _MAX_CONTAINER_ITEMS)
    try:
        limits.check_message(size, "GR00T message")
        lifted = lift(data)
        if lifted is None:
            value = msgpack.unpackb(data, object_hook=_make_hook(writable, limits, forms, seen),
                                    max_bin_len=size, max_str_len=size, max_array_len=items, max_map_len=items,
                                    max_ext_len=0)
        else:
            value = msgpack.unpackb(lifted.message, object_hook=_make_hook(writable, limits, forms, seen, True),
                                    ext_hook=placeholder_hook(lifted.payloads), max_bin_len=size, max_str_len=size,
                                    max_array_len=items, max_map_len=items, max_ext_len=4)
        if type(value) is dict or type(value) is list:
            _check_depth(value, limits)
        return value
    except CodecError:
        raise
    except ProtocolError as error:
        raise CodecError(error.message) from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError, MemoryError, OverflowError) as exc:
        raise CodecError(f"undecodable GR00T message: {type(exc).__name__}: {str(exc)[:200]}") from None
