"""The openpi wire codec: msgpack with numpy arrays as openpi's ``msgpack_numpy`` writes them.

Byte-compatible with ``openpi_client.msgpack_numpy`` (see PROTOCOLS.md section 2):

- an ``ndarray`` becomes a 4-entry map whose keys are msgpack **bin**, in this order:
  ``b"__ndarray__": True``, ``b"data"``: the raw C-order bytes, ``b"dtype"``: ``dtype.str``,
  ``b"shape"``: the shape as an array (Fortran-ordered arrays are sent C-ordered);
- a numpy scalar becomes ``{b"__npgeneric__": True, b"data": item(), b"dtype": dtype.str}``, except
  ``np.float64``, ``np.str_`` and ``np.bytes_``, which are subclasses of Python types and pack as
  plain float / str / bin;
- object, complex and structured (void) dtypes are refused.

Decoding never uses pickle: arrays are read-only numpy arrays, built only for plain numeric, bool,
string and datetime dtypes, and only after the shape, the dtype and the byte count were checked
against the core's :class:`~arena_adapters.transport.DecodeLimits`.

Speed: a message with large arrays is written by :mod:`arena_adapters_openpi.wire` (array memory
joined into the message, one copy in all), others by msgpack. A large message is read by
:mod:`arena_adapters_openpi.reader` (arrays are views of the message, no copy), a small one by
msgpack; from the second message of a layout on, messages are built from the layout's
:mod:`~arena_adapters_openpi.skeleton` (see :func:`decode`).
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import numpy as np

from arena_adapters.errors import ProtocolError
from arena_adapters.transport import DecodeLimits
from arena_adapters_openpi.reader import Slot, read
from arena_adapters_openpi.skeleton import MISS, Skeleton
from arena_adapters_openpi.wire import GATHER_ARRAY_BYTES, GatherInstead, GatherWriter, bin_header

ARRAY_MARKER = b"__ndarray__"
SCALAR_MARKER = b"__npgeneric__"
REFUSED_KINDS = frozenset("VOc")
"""dtype kinds neither side accepts: structured/void, object, complex."""
DECODABLE_KINDS = frozenset("biufSUmM")
"""dtype kinds the decoder builds arrays of."""


class EncodeError(ProtocolError, TypeError):
    """A value cannot be written in the openpi wire format."""


DEFAULT_LIMITS = DecodeLimits()

# ------------------------------------------------------------------------------------ encode


def _encode_numpy(value: Any) -> Any:
    """msgpack's ``default`` hook: the map msgpack_numpy writes for a numpy array or scalar."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in REFUSED_KINDS:
            raise EncodeError(f"cannot send arrays of dtype {value.dtype} (object/complex/structured are refused)")
        return {ARRAY_MARKER: True, b"data": value.tobytes(), b"dtype": value.dtype.str, b"shape": value.shape}
    if isinstance(value, np.generic):
        if value.dtype.kind in REFUSED_KINDS:
            raise EncodeError(f"cannot send scalars of dtype {value.dtype} (object/complex/structured are refused)")
        return {SCALAR_MARKER: True, b"data": value.item(), b"dtype": value.dtype.str}
    raise EncodeError(
        f"cannot send a {type(value).__module__}.{type(value).__qualname__} over openpi: "
        "use numpy arrays, numbers, str, bytes, lists and dicts"
    )


def _encode_or_gather(value: Any) -> Any:
    """:func:`_encode_numpy`, except that large arrays are left to the writer to gather."""
    if type(value) is np.ndarray:
        dtype = value.dtype
        if dtype.kind not in REFUSED_KINDS:
            if value.nbytes >= GATHER_ARRAY_BYTES:
                raise GatherInstead
            return {ARRAY_MARKER: True, b"data": value.tobytes(), b"dtype": dtype.str, b"shape": value.shape}
    return _encode_numpy(value)


_ARRAY_HEAD = msgpack.packb({ARRAY_MARKER: True, b"data": b""}, use_bin_type=True)[:-2].replace(b"\x82", b"\x84", 1)
_FRAMES: dict[tuple[np.dtype[Any], tuple[int, ...]], tuple[bytes, bytes, bool]] = {}
"""Per dtype and shape: the bytes before an array's data, those after it, and whether the array
itself can be joined (or needs a uint8 view: numpy exports no buffer of dates or str)."""
_FRAME_CACHE_SIZE = 256
_DIRECT_KINDS = frozenset("biuf")


def _array_parts(value: np.ndarray[Any, Any]) -> tuple[Any, ...] | None:
    """The msgpack form of an array as parts (map head with the ``data`` bin header, the array's
    memory, the ``dtype`` and ``shape`` entries), or ``None`` for arrays msgpack's ``default``
    hook handles (refused dtypes)."""
    try:
        head, tail, direct = _FRAMES[value.dtype, value.shape]
    except KeyError:
        dtype = value.dtype
        if dtype.kind in REFUSED_KINDS:
            return None
        tail = msgpack.packb({b"dtype": dtype.str, b"shape": value.shape}, use_bin_type=True)[1:]
        head, direct = _ARRAY_HEAD + bin_header(value.nbytes), dtype.kind in _DIRECT_KINDS
        if len(_FRAMES) >= _FRAME_CACHE_SIZE:
            _FRAMES.clear()
        _FRAMES[dtype, value.shape] = (head, tail, direct)
    if not value.flags.c_contiguous:
        value = np.ascontiguousarray(value)
    return head, value if direct else value.reshape(-1).view(np.uint8), tail


_local = threading.local()


def _new_writer() -> GatherWriter:
    gathering = msgpack.Packer(default=_encode_or_gather, use_bin_type=True)
    plain = msgpack.Packer(default=_encode_numpy, use_bin_type=True)
    writer = _local.writer = GatherWriter(gathering.pack, plain.pack, _array_parts)
    return writer


def encode(value: Any) -> bytes:
    """Return the openpi wire bytes of ``value`` (an observation, a reply, metadata, ...).

    Raises:
        EncodeError: a value of an unsupported type or dtype.
    """
    try:
        writer: GatherWriter = _local.writer
    except AttributeError:
        writer = _new_writer()
    try:
        try:
            return writer.pack(value)
        except GatherInstead:
            return writer.gather(value)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode value for openpi: {exc}") from exc


# ------------------------------------------------------------------------------------ decode

_DTYPE_CACHE: dict[str | bytes, np.dtype[Any]] = {}
_DTYPE_CACHE_SIZE = 256


def _checked_dtype(text: Any, limits: DecodeLimits) -> np.dtype[Any]:
    """The dtype an array or scalar map names, if the decoder builds that kind."""
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
    return np.ndarray(tuple(shape), dtype, data)


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


def _decode_map(node: dict[Any, Any], limits: DecodeLimits) -> Any:
    """The array or scalar a decoded map stands for, or the map itself."""
    if ARRAY_MARKER in node:
        return _decode_array(node, limits)
    if SCALAR_MARKER in node:
        return _decode_scalar(node, limits)
    return node


_SKELETONS: dict[int, Skeleton] = {}
"""The skeleton of the last message of each length read with a view reader after the first."""
_SEEN_ONCE: set[int] = set()
"""The lengths of messages read once."""
_LAYOUT_CACHE_SIZE = 64
SMALL_MESSAGE_BYTES = 16 * 1024
"""Messages below this size, unless their layout was seen before, are read by msgpack itself
(bin copies cost little there, and msgpack's C walk less than this module's Python one)."""


def decode(data: bytes | bytearray | memoryview | str, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decode openpi wire bytes; arrays come back read-only, as views of ``data`` (of a copy of it
    when it is not ``bytes``) where the message is large or its layout recurs: keeping one keeps
    the whole message alive.

    The second message of a length is read by :mod:`arena_adapters_openpi.reader` and leaves a
    :class:`~arena_adapters_openpi.skeleton.Skeleton`: later messages with the same bytes except
    array data and float64 values (an observation stream, a reply stream) are built from it.

    Raises:
        ProtocolError: the bytes are not msgpack, exceed ``limits``, or hold an unacceptable array.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ProtocolError(f"openpi message: expected binary data, got {type(data).__name__}")
        data = bytes(data)
    size = len(data)
    if size > limits.max_message_bytes:
        limits.check_message(size, "openpi message")
    skeleton = _SKELETONS.get(size)
    if skeleton is not None:
        value = skeleton.value_of(data, limits)
        if value is not MISS:
            return value
    elif size not in _SEEN_ONCE:
        if len(_SEEN_ONCE) >= _LAYOUT_CACHE_SIZE:
            _SEEN_ONCE.clear()
        _SEEN_ONCE.add(size)
        return _read_once(data, limits)
    value, slots, depth = _read_views(data, limits)
    skeleton = Skeleton.of(value, data, slots, depth)
    if skeleton is None:  # start over: the next message of this length is read once again
        _SKELETONS.pop(size, None)
        _SEEN_ONCE.discard(size)
    else:
        if len(_SKELETONS) >= _LAYOUT_CACHE_SIZE:
            _SKELETONS.clear()
        _SKELETONS[size] = skeleton
    return value


def forget_layouts() -> None:
    """Forget the message layouts seen so far (their skeletons): the next messages decode as if
    they were the first of their kind. For benchmarks and tests; safe at any time."""
    _SKELETONS.clear()
    _SEEN_ONCE.clear()


def _read_views(data: bytes, limits: DecodeLimits) -> tuple[Any, list[Slot], int]:
    """A message read in one pass, arrays as views of it (see :func:`~arena_adapters_openpi.reader.read`)."""
    return read(data, limits, _checked_dtype, _decode_map)


def _read_once(data: bytes, limits: DecodeLimits) -> Any:
    """A message read without leaving a skeleton: large ones with views, small ones by msgpack."""
    if len(data) >= SMALL_MESSAGE_BYTES:
        return _read_views(data, limits)[0]
    try:
        return msgpack.unpackb(data, object_hook=lambda node: _decode_map(node, limits), raw=False)
    except ProtocolError:
        raise
    except msgpack.StackError:  # as the reader says it (msgpack's own message is empty)
        raise ProtocolError("openpi message nests too deep to read") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise ProtocolError(f"openpi message is not valid msgpack: {type(exc).__name__}: {exc}") from None


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
