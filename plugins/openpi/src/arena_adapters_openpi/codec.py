"""The openpi wire codec: msgpack with numpy arrays as openpi's ``msgpack_numpy`` writes them.

Byte-compatible with ``openpi_client.msgpack_numpy`` (see PROTOCOLS.md section 2):

- an ``ndarray`` becomes a 4-entry map whose keys are msgpack **bin**, in this order:
  ``b"__ndarray__": True``, ``b"data"``: the raw C-order bytes, ``b"dtype"``: ``dtype.str``,
  ``b"shape"``: the shape as an array (Fortran-ordered arrays are sent C-ordered);
- a numpy scalar becomes ``{b"__npgeneric__": True, b"data": item(), b"dtype": dtype.str}``, except
  ``np.float64``, ``np.str_`` and ``np.bytes_``, which are subclasses of Python types and pack as
  plain float / str / bin;
- object, complex and structured (void) dtypes are refused.

Decoding never uses pickle: arrays are read-only, zero-copy views of the received bytes, built only
for plain numeric, bool, string and datetime dtypes, and only after the shape, the dtype and the
byte count were checked against the core's :class:`~arena_adapters.transport.DecodeLimits`.

Speed: arrays are written straight from their memory into the message, one copy in all (see
:mod:`arena_adapters_openpi.wire`); reading is msgpack's.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import numpy as np

from arena_adapters.errors import ProtocolError
from arena_adapters.transport import DecodeLimits
from arena_adapters_openpi.wire import GatherWriter, bin_header

ARRAY_MARKER = b"__ndarray__"
SCALAR_MARKER = b"__npgeneric__"
REFUSED_KINDS = frozenset("VOc")
"""dtype kinds neither side accepts: structured/void, object, complex."""
DECODABLE_KINDS = frozenset("biufSUmM")
"""dtype kinds the decoder builds arrays of."""


class EncodeError(ProtocolError, TypeError):
    """A value cannot be written in the openpi wire format."""


DEFAULT_LIMITS = DecodeLimits()


def _encode_numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in REFUSED_KINDS:
            raise EncodeError(f"cannot send arrays of dtype {value.dtype} (object/complex/structured are refused)")
        if value.dtype.itemsize == 0 or value.dtype.hasobject:
            data: Any = value.tobytes()
        else:
            flat = value.reshape(-1) if value.flags.c_contiguous else np.ascontiguousarray(value).reshape(-1)
            data = flat.view(np.uint8).data
        return {ARRAY_MARKER: True, b"data": data, b"dtype": value.dtype.str, b"shape": value.shape}
    if isinstance(value, np.generic):
        if value.dtype.kind in REFUSED_KINDS:
            raise EncodeError(f"cannot send scalars of dtype {value.dtype} (object/complex/structured are refused)")
        return {SCALAR_MARKER: True, b"data": value.item(), b"dtype": value.dtype.str}
    raise EncodeError(
        f"cannot send a {type(value).__module__}.{type(value).__qualname__} over openpi: "
        "use numpy arrays, numbers, str, bytes, lists and dicts"
    )


_local = threading.local()


def _packer() -> msgpack.Packer:
    packer: msgpack.Packer | None = getattr(_local, "packer", None)
    if packer is None:
        packer = msgpack.Packer(default=_encode_numpy, use_bin_type=True)
        _local.packer = packer
    return packer


_ARRAY_HEAD = msgpack.packb({ARRAY_MARKER: True, b"data": b""}, use_bin_type=True)[:-2].replace(b"\x82", b"\x84", 1)
_FRAMES: dict[tuple[np.dtype[Any], tuple[int, ...]], tuple[bytes, bytes]] = {}
_DIRECT_KINDS = frozenset("biuf")


def _frame(dtype: np.dtype[Any], shape: tuple[int, ...], nbytes: int) -> tuple[bytes, bytes]:
    """The bytes before an array's payload (map header, marker, ``data`` bin header) and after it
    (``dtype`` and ``shape``), cached per dtype and shape."""
    key = (dtype, shape)
    frame = _FRAMES.get(key)
    if frame is None:
        tail = msgpack.packb({b"dtype": dtype.str, b"shape": shape}, use_bin_type=True)[1:]
        frame = (_ARRAY_HEAD + bin_header(nbytes), tail)
        if len(_FRAMES) < 256:
            _FRAMES[key] = frame
    return frame


def _array_parts(value: np.ndarray[Any, Any]) -> list[Any] | None:
    """The msgpack form of an array as parts (head, its memory as a buffer, tail), or ``None`` for
    arrays the packer's ``default`` hook handles (refused dtypes, zero-size items)."""
    dtype = value.dtype
    if dtype.kind in REFUSED_KINDS or dtype.itemsize == 0 or dtype.hasobject:
        return None
    if not value.flags.c_contiguous:
        value = np.ascontiguousarray(value).reshape(value.shape)
    head, tail = _frame(dtype, value.shape, value.nbytes)
    payload = value if dtype.kind in _DIRECT_KINDS else value.reshape(-1).view(np.uint8)
    return [head, payload, tail]


def _writer() -> GatherWriter:
    writer: GatherWriter | None = getattr(_local, "writer", None)
    if writer is None:
        writer = GatherWriter(_packer(), _array_parts)
        _local.writer = writer
    return writer


def encode(value: Any) -> bytes:
    """Return the openpi wire bytes of ``value`` (an observation, a reply, metadata, ...).

    Raises:
        EncodeError: a value of an unsupported type or dtype.
    """
    packer = _packer()
    try:
        return _writer().write(value)
    except EncodeError:
        packer.reset()
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        packer.reset()
        raise EncodeError(f"cannot encode value for openpi: {exc}") from exc


_DTYPE_CACHE: dict[str | bytes, np.dtype[Any]] = {}
_DTYPE_CACHE_SIZE = 256


def _checked_dtype(text: Any, limits: DecodeLimits) -> np.dtype[Any]:
    cached = _DTYPE_CACHE.get(text) if isinstance(text, (str, bytes)) else None
    if cached is not None:
        return cached
    if not isinstance(text, (str, bytes)):
        raise ProtocolError(f"openpi array: dtype must be a short str, got {type(text).__name__}")
    dtype = limits.dtype(text, "openpi array")
    if dtype.kind not in DECODABLE_KINDS:
        raise ProtocolError(f"openpi array: dtype {dtype.str!r} is not accepted (complex)")
    if len(_DTYPE_CACHE) < _DTYPE_CACHE_SIZE:
        _DTYPE_CACHE[text] = dtype
    return dtype


def _decode_array(node: dict[Any, Any], limits: DecodeLimits) -> np.ndarray[Any, Any]:
    try:
        data, dtype_text, shape = node[b"data"], node[b"dtype"], node[b"shape"]
    except KeyError as exc:
        raise ProtocolError(f"openpi array map lacks key {exc.args[0]!r}: has {list(node)}") from None
    dtype = _checked_dtype(dtype_text, limits)
    if type(data) is not bytes:
        raise ProtocolError(f"openpi array: data must be bin, got {type(data).__name__}")
    if type(shape) is not list or len(shape) > limits.max_ndim:
        raise ProtocolError(
            f"openpi array: shape must be a list of at most {limits.max_ndim} ints, got {_excerpt(shape)}"
        )
    count = 1
    for size in shape:
        if type(size) is not int or size < 0:
            raise ProtocolError(f"openpi array: shape must hold ints >= 0, got {_excerpt(shape)}")
        count *= size
    expected = count * dtype.itemsize
    if expected != len(data):
        raise ProtocolError(
            f"openpi array: {dtype.str} {tuple(shape)} needs {expected} bytes of data, got {len(data)}"
        )
    if expected > limits.max_array_bytes:
        raise ProtocolError(f"openpi array of {expected} bytes exceeds max_array_bytes={limits.max_array_bytes}")
    return np.frombuffer(data, dtype).reshape(shape)


def _decode_scalar(node: dict[Any, Any], limits: DecodeLimits) -> np.generic:
    try:
        data, dtype_text = node[b"data"], node[b"dtype"]
    except KeyError as exc:
        raise ProtocolError(f"openpi scalar map lacks key {exc.args[0]!r}: has {list(node)}") from None
    dtype = _checked_dtype(dtype_text, limits)
    if not isinstance(data, (bool, int, float, str, bytes)):
        raise ProtocolError(f"openpi scalar: data must be a number, str or bin, got {type(data).__name__}")
    if dtype.kind in "SU" and not isinstance(data, (str, bytes)):
        # np.bytes_(n) would allocate n zero bytes: a 37-byte message must not cost gigabytes.
        raise ProtocolError(f"openpi scalar: a {dtype.str} scalar needs str or bin data, got {type(data).__name__}")
    try:
        return dtype.type(data)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"openpi scalar: {data!r} is not a valid {dtype.str}: {exc}") from None


def _object_hook(limits: DecodeLimits) -> Any:
    def hook(node: dict[Any, Any]) -> Any:
        if ARRAY_MARKER in node:
            return _decode_array(node, limits)
        if SCALAR_MARKER in node:
            return _decode_scalar(node, limits)
        return node

    return hook


_DEFAULT_HOOK = _object_hook(DEFAULT_LIMITS)


def decode(data: bytes | bytearray | memoryview | str, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decode openpi wire bytes; arrays come back as read-only numpy views of ``data``.

    Raises:
        ProtocolError: the bytes are not msgpack, exceed ``limits``, or hold an unacceptable array.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"openpi message: expected binary data, got {type(data).__name__}")
    limits.check_message(len(data), "openpi message")
    hook = _DEFAULT_HOOK if limits is DEFAULT_LIMITS else _object_hook(limits)
    try:
        return msgpack.unpackb(data, object_hook=hook, raw=False)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise ProtocolError(f"openpi message is not valid msgpack: {type(exc).__name__}: {exc}") from None


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
