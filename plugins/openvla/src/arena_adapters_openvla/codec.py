"""A fast JSON codec compatible with json_numpy, the array format of OpenVLA's ``deploy.py``.

A numpy array (or numpy scalar) travels as a JSON object::

    {"__numpy__": "<base64 of the raw C-order bytes>", "dtype": "<descr, e.g. |u1>", "shape": [224, 224, 3]}

A numpy scalar has ``"shape": []`` and decodes back to a numpy scalar. Everything else is plain JSON
with json's own rules (``np.float64`` is a Python float subclass and is written as a plain number,
``np.int64`` is not and becomes an array object), exactly as ``json_numpy.dumps`` writes it.

The encoder writes the JSON bytes directly: one base64 pass per array, no ``str`` round trip and no
escaping pass over the base64 text. The decoder cuts the base64 strings of large bodies out before
the JSON parser sees them, then decodes each with one base64 call, and reads a list of arrays of one
dtype and shape (the OFT reply) without the JSON parser at all; decoded arrays are read-only views
of the decoded bytes, like json_numpy's. Object dtypes are refused in both directions.

Decoding keeps within :class:`~arena_adapters.transport.DecodeLimits`: the text's size, nesting
depth and integer literal length, and each array's dtype (the kit's allow-list: no object, void or
structured types), dimensions and size are checked before anything is allocated for them; an
array's bytes must be exactly what it declares. Whatever goes wrong is a ``ProtocolError``.

Nothing here touches the ``json`` module's globals (no ``json_numpy.patch()``).
"""

from __future__ import annotations

import binascii
import json
import re
import threading
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np
from numpy.lib.format import dtype_to_descr
from numpy.typing import NDArray

from arena_adapters.errors import ProtocolError
from arena_adapters.transport import DecodeLimits
from arena_adapters_openvla import base64_backend
from arena_adapters_openvla.base64_backend import Base64Backend

ARRAY_KEY = "__numpy__"
REQUEST_SEPARATORS = (", ", ": ")
"""What ``requests.post(url, json=...)`` writes after ``json_numpy.patch()`` (upstream clients)."""
REPLY_SEPARATORS = (",", ":")
"""What starlette's ``JSONResponse`` writes (upstream ``deploy.py`` replies)."""

_FAST_PATH_MIN_BYTES = 16 * 1024
"""Texts from this size on are decoded with their base64 strings cut out first (:func:`_loads_cut`); in
smaller ones the JSON parser scans the base64 faster than they are cut out (an OFT chunk reply of 16
small arrays, 2 KB: ~55 us plain, ~95 us cut; one 16 KB array, 22 KB: ~60 us plain, ~20 us cut)."""
_QUOTED_ARRAY_KEY = b'"__numpy__"'
_DIM = rb"(?:0|[1-9][0-9]{0,17})"
_FIRST_LIKE_ARRAY = re.compile(
    rb'\[\{"__numpy__"(?P<key>: ?)"[A-Za-z0-9+/=]*(?P<closing>"(?P<item>, ?)"dtype"(?P=key)'
    rb'"(?P<dtype>[<>|=][a-zA-Z][0-9]{1,3})"(?P=item)"shape"(?P=key)\[(?P<shape>' + _DIM + rb"(?:(?P=item)" + _DIM
    + rb")*)\]\})"
)
"""The start of a list of arrays as json_numpy and this codec write it (either separators), up to
the end of its first array object."""
_JSON_WHITESPACE = b" \t\n\r"


class EncodeError(ProtocolError, TypeError):
    """A value cannot be written as json_numpy JSON (an object dtype, an unsupported type)."""


DecodeError = ProtocolError
"""What decoding raises when bytes are not json_numpy JSON within the limits: the core's
ProtocolError itself (the name is kept for callers of earlier versions)."""


# --------------------------------------------------------------------------------------- encoding


class _Framing:
    """The constant byte fragments of one pair of JSON separators."""

    def __init__(self, separators: tuple[str, str]) -> None:
        self.item = separators[0].encode("ascii")
        self.key = separators[1].encode("ascii")
        self.array_open = b'{"__numpy__"' + self.key + b'"'
        self.array_dtype = b'"' + self.item + b'"dtype"' + self.key
        self.array_shape = self.item + b'"shape"' + self.key


_FRAMINGS: dict[tuple[str, str], _Framing] = {}


def _framing(separators: tuple[str, str]) -> _Framing:
    framing = _FRAMINGS.get(separators)
    if framing is None:
        framing = _FRAMINGS[separators] = _Framing(separators)
    return framing


def encode(
    value: Any,
    *,
    separators: tuple[str, str] = REQUEST_SEPARATORS,
    backend: Base64Backend | None = None,
) -> bytes:
    """Return the json_numpy JSON text of ``value`` as ASCII bytes (an HTTP body).

    ``value`` may hold dicts (insertion order is kept), lists, tuples, str, int, float, bool, None,
    numpy arrays of any memory order (written in C order) and numpy scalars.

    Raises:
        EncodeError: an object dtype, or a type JSON cannot hold.
    """
    out: list[bytes] = []
    _write(value, out, _framing(separators), backend or base64_backend.DEFAULT)
    return b"".join(out)


def encode_double(
    payload: Any,
    *,
    separators: tuple[str, str] = REQUEST_SEPARATORS,
    inner_separators: tuple[str, str] = REQUEST_SEPARATORS,
    backend: Base64Backend | None = None,
) -> bytes:
    """Return the double-encoded request body ``{"encoded": "<json_numpy text of payload>"}``.

    This is the form ``deploy.py`` accepts for clients without json_numpy; the server answers it
    with a JSON string that holds the json_numpy text of the action (decode it twice).
    """
    inner = encode(payload, separators=inner_separators, backend=backend)
    return b'{"encoded"' + _framing(separators).key + encode_json_string(inner) + b"}"


def encode_json_string(text: bytes) -> bytes:
    """Quote JSON text made by :func:`encode` as a JSON string (the double-encoded forms).

    That text is ASCII without control characters, so only backslashes and quotes need escaping.
    """
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _write(value: Any, out: list[bytes], framing: _Framing, backend: Base64Backend) -> None:
    # Checked in the order of json's encoder, so subclasses (np.float64, np.str_) go the same way.
    if isinstance(value, str):
        out.append(encode_basestring_ascii(value).encode("ascii"))
    elif value is None:
        out.append(b"null")
    elif value is True:
        out.append(b"true")
    elif value is False:
        out.append(b"false")
    elif isinstance(value, int):
        out.append(int.__repr__(value).encode("ascii"))
    elif isinstance(value, float):
        out.append(_float_text(value).encode("ascii"))
    elif isinstance(value, (list, tuple)):
        out.append(b"[")
        if not _write_like_arrays(value, out, framing, backend):
            for index, item in enumerate(value):
                if index:
                    out.append(framing.item)
                _write(item, out, framing, backend)
        out.append(b"]")
    elif isinstance(value, Mapping):
        out.append(b"{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(framing.item)
            out.append(_key_text(key))
            out.append(framing.key)
            _write(item, out, framing, backend)
        out.append(b"}")
    elif isinstance(value, (np.ndarray, np.generic)):
        _write_array(value, out, framing, backend)
    else:
        raise EncodeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _write_array(value: NDArray[Any] | np.generic, out: list[bytes], framing: _Framing, backend: Base64Backend) -> None:
    array = np.asarray(value)
    dtype = array.dtype
    if dtype.hasobject:
        raise EncodeError(f"numpy arrays of dtype {dtype} hold Python objects and cannot be sent as json_numpy")
    out.append(framing.array_open)
    out.append(backend.encode(_raw_bytes(array)))
    out.append(framing.array_dtype)
    if dtype.names is None:
        out.append(encode_basestring_ascii(dtype.str).encode("ascii"))
    else:
        _write(dtype_to_descr(dtype), out, framing, backend)  # type: ignore[no-untyped-call]
    out.append(_shape_tail(array.shape, framing))


def _write_like_arrays(items: list[Any] | tuple[Any, ...], out: list[bytes], framing: _Framing,
                       backend: Base64Backend) -> bool:
    """Write ``items`` when they are two or more arrays of one plain dtype and one shape (a chunk
    sent as a list of actions), their dtype and shape text made once; else write nothing."""
    if len(items) < 2 or type(items[0]) is not np.ndarray:
        return False
    dtype, shape = items[0].dtype, items[0].shape
    if dtype.names is not None or dtype.hasobject:
        return False
    for item in items:
        if type(item) is not np.ndarray or item.dtype != dtype or item.shape != shape:
            return False
    closing = framing.array_dtype + encode_basestring_ascii(dtype.str).encode("ascii") + _shape_tail(shape, framing)
    between = closing + framing.item + framing.array_open
    last = len(items) - 1
    out.append(framing.array_open)
    for index, item in enumerate(items):
        out.append(backend.encode(_raw_bytes(item)))
        out.append(closing if index == last else between)
    return True


def _raw_bytes(array: NDArray[Any]) -> Any:
    """``array``'s data in C order, as bytes (empty for no data)."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array.reshape(-1).view(np.uint8) if array.size and array.dtype.itemsize else b""


def _shape_tail(shape: tuple[int, ...], framing: _Framing) -> bytes:
    return framing.array_shape + b"[" + framing.item.join(b"%d" % n for n in shape) + b"]}"


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _key_text(key: Any) -> bytes:
    if isinstance(key, str):
        return encode_basestring_ascii(key).encode("ascii")
    if key is True or key is False or key is None:
        text = {True: "true", False: "false", None: "null"}[key]
    elif isinstance(key, int):
        text = int.__repr__(key)
    elif isinstance(key, float):
        text = _float_text(key)
    else:
        raise EncodeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
    return b'"' + text.encode("ascii") + b'"'


# --------------------------------------------------------------------------------------- decoding

DEFAULT_LIMITS = DecodeLimits()
"""The limits :func:`decode` applies when given none."""

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[list(b"[{")] = 1
_BRACKET_STEP[list(b"]}")] = -1
_DEPTH_BLOCK = 1 << 20
_DIGITS = b"0123456789"


def decode(
    data: bytes | bytearray | memoryview | str,
    *,
    backend: Base64Backend | None = None,
    limits: DecodeLimits | None = None,
) -> Any:
    """Decode json_numpy JSON text (an HTTP body) into Python values and read-only numpy arrays.

    Everything a peer declares is checked against ``limits`` before it is used: the text's size,
    its nesting depth, the length of integer literals, each array's dtype (no object or void
    types), number of dimensions and size; an array's bytes must be exactly what its dtype and
    shape declare.

    Raises:
        ProtocolError: invalid JSON, a limit exceeded, or an array object that cannot be rebuilt.
            No other exception leaves this function.
    """
    try:
        return loads(data, backend=backend, limits=limits)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None


def loads(
    data: bytes | bytearray | memoryview | str,
    *,
    backend: Base64Backend | None = None,
    limits: DecodeLimits | None = None,
) -> Any:
    """Like :func:`decode`, but invalid JSON raises ``json.JSONDecodeError`` as ``json.loads`` does
    (the reference server relies on this to answer 422 exactly like FastAPI); every other failure
    is a :class:`~arena_adapters.errors.ProtocolError`."""
    try:
        return _loads(data, backend or base64_backend.DEFAULT, limits or DEFAULT_LIMITS)
    except (json.JSONDecodeError, ProtocolError):
        raise
    except RecursionError:
        raise DecodeError("json_numpy text nests too deep to parse") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid JSON text encoding: {exc}") from None
    except Exception as exc:  # whatever else a hostile text provokes is still a protocol error
        raise DecodeError(f"undecodable json_numpy text: {type(exc).__name__}: {str(exc)[:200]}") from None


def _loads(data: bytes | bytearray | memoryview | str, backend: Base64Backend, limits: DecodeLimits) -> Any:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if len(data) > limits.max_message_bytes:
        limits.check_message(len(data), "json_numpy text")
    if isinstance(data, str):
        if len(data) >= _FAST_PATH_MIN_BYTES and data.isascii():
            data = data.encode("ascii")
        else:
            return _parse(data, backend, limits, cut=False)
    if data[:1] == b"[":
        like = _loads_like_arrays(data, backend, limits)
        if like is not None:
            return like
    if len(data) >= _FAST_PATH_MIN_BYTES:
        found = _loads_cut(data, backend, limits)
        if found is not None:
            return found[0]
    return _parse(data, backend, limits, cut=False)


class _PerThread(threading.local):
    """Each thread's JSON decoders, made once per (backend, limits) and path, and the base64 slices
    the cut-out path's decoder is reviving now."""

    def __init__(self) -> None:
        self.decoders: dict[tuple[int, int, bool, bool], tuple[Base64Backend, DecodeLimits, json.JSONDecoder]] = {}
        self.cut: _Cut | None = None


_per_thread = _PerThread()


def _decoder(backend: Base64Backend, limits: DecodeLimits, *, cut: bool, check_ints: bool) -> json.JSONDecoder:
    """A decoder reviving json_numpy objects within ``limits`` (for the cut-out path: from the
    current :class:`_Cut`), checking the length of each integer literal if ``check_ints``; kept
    per thread, as building one costs more than a small decode."""
    key = (id(backend), id(limits), cut, check_ints)
    entry = _per_thread.decoders.get(key)
    if entry is not None and entry[0] is backend and entry[1] is limits:
        return entry[2]
    max_digits = limits.max_int_digits

    def parse_int(literal: str) -> int:
        if len(literal) > max_digits:
            limits.check_int_digits(len(literal.lstrip("-")))
        return int(literal)

    def revive(fields: dict[str, Any]) -> Any:  # _revive, inlined: it runs for every JSON object
        if ARRAY_KEY not in fields:
            return fields
        text = fields[ARRAY_KEY]
        if type(text) is not str:
            return _revive(fields, backend, limits)
        return _array_of(fields, text, backend, limits)

    def revive_cut(fields: dict[str, Any]) -> Any:
        current = _per_thread.cut
        return _revive(fields, backend, limits) if current is None else current.revive(fields)

    decoder = json.JSONDecoder(object_hook=revive_cut if cut else revive, parse_int=parse_int if check_ints else None)
    if len(_per_thread.decoders) >= 32:
        _per_thread.decoders.clear()
    _per_thread.decoders[key] = (backend, limits, decoder)
    return decoder


def _parse(text: bytes | str, backend: Base64Backend, limits: DecodeLimits, *, cut: bool) -> Any:
    """What ``json.loads(text)`` does, with json_numpy objects revived, within the depth and
    integer-literal limits.

    Integer literals are checked one by one only when the text holds more digits than one literal
    may have (a check per literal costs more than counting the digits of a small text).
    """
    if isinstance(text, str):
        _check_depth(text, limits)
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _decoder(backend, limits, cut=cut, check_ints=True).decode(text)
    if text.count(b"[") + text.count(b"{") > limits.max_depth:
        _check_depth(text, limits)
    check_ints = len(text) - len(text.translate(None, _DIGITS)) > limits.max_int_digits
    decoder = _decoder(backend, limits, cut=cut, check_ints=check_ints)
    return decoder.decode(text.decode(json.detect_encoding(text), "surrogatepass"))


def _check_depth(text: bytes | str, limits: DecodeLimits) -> None:
    """Refuse text nesting deeper than ``max_depth``, before the JSON parser recurses into it.

    Brackets are counted outside JSON strings only; text with no more opening brackets than the
    limit needs no count at all.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limits.max_depth:
        return
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _DEPTH_BLOCK):
        steps = _BRACKET_STEP[np.frombuffer(brackets, np.uint8, min(_DEPTH_BLOCK, len(brackets) - start), start)]
        running = np.cumsum(steps, dtype=np.int64) + depth
        limits.check_depth(int(running.max()), "json_numpy text")
        depth = int(running[-1])


def _revive(fields: dict[str, Any], backend: Base64Backend, limits: DecodeLimits) -> Any:
    """json_numpy's rule: any JSON object with a ``__numpy__`` key is an array."""
    if ARRAY_KEY not in fields:
        return fields
    text = fields[ARRAY_KEY]
    if not isinstance(text, str):
        raise DecodeError(f"json_numpy object: '__numpy__' must be a base64 str, got {type(text).__name__}")
    return _array_of(fields, text, backend, limits)


def _b64decode(text: Any, backend: Base64Backend) -> bytes:
    try:
        return backend.decode_strict(text)
    except (binascii.Error, ValueError):
        try:
            return backend.decode_lenient(text)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"json_numpy object: invalid base64 data: {exc}") from None


def _array_of(
    fields: Mapping[str, Any], text: str | memoryview, backend: Base64Backend, limits: DecodeLimits
) -> NDArray[Any] | np.generic:
    """The array of a json_numpy object: dtype and shape checked before its base64 is decoded."""
    try:
        descr, shape = fields["dtype"], fields["shape"]
    except KeyError as exc:
        raise DecodeError(f"json_numpy object without {exc.args[0]!r}: keys {sorted(fields)}") from None
    dtype = _allowed_dtype(descr, limits)
    # The usual shape, a short list of non-negative ints, is sized here; anything else by the kit's
    # checks (and their messages).
    size = dtype.itemsize
    if type(shape) is list and len(shape) <= limits.max_ndim:
        for dim in shape:
            if type(dim) is not int or dim < 0:
                size = _declared_size(dtype, shape, limits)
                break
            size *= dim
        if size > limits.max_array_bytes:
            size = _declared_size(dtype, shape, limits)
    else:
        size = _declared_size(dtype, shape, limits)
    raw = _b64decode(text, backend)
    if len(raw) != size:
        raise DecodeError(f"json_numpy object: {len(raw)} bytes do not make dtype {descr!r} shape {shape!r}")
    if shape:
        array: NDArray[Any] = np.ndarray(shape, dtype, raw)  # a read-only C-order view of the decoded bytes
        return array
    return np.frombuffer(raw, dtype)[0]  # type: ignore[no-any-return]


def _declared_size(dtype: np.dtype[Any], shape: Any, limits: DecodeLimits) -> int:
    """The bytes an array of ``dtype`` and ``shape`` needs; ProtocolError for a malformed shape or
    one over ``max_ndim`` or ``max_array_bytes``."""
    return limits.array_bytes(dtype, limits.shape(shape, "json_numpy object"), "json_numpy object")


_DTYPES: dict[str, np.dtype[Any]] = {}
"""Allowed dtypes by their descriptor string, to parse each once."""


def _allowed_dtype(descr: Any, limits: DecodeLimits) -> np.dtype[Any]:
    """The dtype a json_numpy object declares, if the limits allow it (remembered by its string)."""
    cached = _DTYPES.get(descr) if isinstance(descr, str) else None
    if cached is not None:
        return cached
    dtype = limits.dtype(descr, "json_numpy object")
    if isinstance(descr, str) and len(_DTYPES) < 256:
        _DTYPES[descr] = dtype
    return dtype


class _Fallback(Exception):
    """The cut-out fast path met something unusual; decode the whole text the plain way."""


def _loads_cut(data: bytes, backend: Base64Backend, limits: DecodeLimits) -> tuple[Any] | None:
    """Decode ``data`` with the base64 strings of its arrays cut out before JSON parsing.

    Each ``"__numpy__": "..."`` value is replaced by a short placeholder string ``"#<n>"`` and kept
    as a zero-copy slice, so the JSON parser only scans the small remainder. The result is used
    only when every placeholder was met exactly once as the ``__numpy__`` value of a JSON object,
    which makes it identical to parsing the original text; otherwise returns ``None``.

    Why that suffices: a cut is made only after an unescaped ``"__numpy__"`` followed by ``:`` and a
    string without backslashes, so in valid JSON every cut is the value of a real ``__numpy__`` key
    and its placeholder is met. A placeholder met twice can only come from a hand-escaped key or
    value elsewhere, and then the plain parse decides.
    """
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    blobs: list[memoryview] = []
    copied = search = 0
    length = len(data)
    while True:
        at = data.find(_QUOTED_ARRAY_KEY, search)
        if at < 0:
            break
        search = cursor = at + len(_QUOTED_ARRAY_KEY)
        if _escaped(data, at):  # the tail of a longer string such as "a\"__numpy__"
            continue
        while cursor < length and data[cursor] in _JSON_WHITESPACE:
            cursor += 1
        if cursor >= length or data[cursor] != 0x3A:  # ':' -- not a key: leave it to the parser
            continue
        cursor += 1
        while cursor < length and data[cursor] in _JSON_WHITESPACE:
            cursor += 1
        if cursor >= length or data[cursor] != 0x22:  # '"' -- not a str value: the hook will complain
            continue
        start = cursor + 1
        end = data.find(b'"', start)
        if end < 0 or data.find(b"\\", start, end) >= 0:
            return None
        pieces.append(view[copied:start])
        pieces.append(b"#%d" % len(blobs))
        blobs.append(view[start:end])
        copied = search = end
    if not blobs:
        return None
    pieces.append(view[copied:])
    current = _Cut(blobs, backend, limits)
    _per_thread.cut = current
    try:
        value = _parse(b"".join(pieces), backend, limits, cut=True)
    except (_Fallback, json.JSONDecodeError, DecodeError):
        return None
    finally:
        _per_thread.cut = None
    return (value,) if all(current.met) else None


def _loads_like_arrays(data: bytes, backend: Base64Backend, limits: DecodeLimits) -> list[Any] | None:
    """Decode ``data`` when it is exactly a list of arrays of one dtype and one non-empty shape (a
    chunk sent as a list of actions: the OFT reply), written as json_numpy writes them; else
    ``None``, and the plain parse decides (errors included).

    The text after the first array's base64 must repeat, between each two base64 strings, what
    closed the first one. Every piece between those repeats must then decode as strict base64, whose
    alphabet has no quote, bracket, comma or space: so the text is that list and nothing else, and
    the result is what parsing it gives, without the JSON parser or a hook call per array.
    """
    first = _FIRST_LIKE_ARRAY.match(data)
    if first is None or limits.max_depth < 3:
        return None
    closing, item, key = first.group("closing", "item", "key")
    opening = b'[{"__numpy__"' + key + b'"'
    end = closing + b"]"
    if not data.endswith(end) or len(data) < len(opening) + len(end):
        return None
    try:
        dims = first.group("shape").split(item)
        if max(len(dim) for dim in dims) > limits.max_int_digits:
            return None
        shape = limits.shape([int(dim) for dim in dims], "json_numpy object")
        descr = first.group("dtype").decode("ascii")
        dtype = _allowed_dtype(descr, limits)
        size = limits.array_bytes(dtype, shape, "json_numpy object")
        decode = backend.decode_strict
        raws = [decode(text) for text in data[len(opening):len(data) - len(end)].split(closing + item + opening[1:])]
    except (ProtocolError, binascii.Error, ValueError):
        return None
    if any(len(raw) != size for raw in raws):
        return None
    arrays: list[Any] = list(np.frombuffer(b"".join(raws), dtype).reshape(len(raws), *shape))
    return arrays


class _Cut:
    """The base64 slices cut out of a text, revived as the parser meets their placeholders."""

    __slots__ = ("backend", "blobs", "limits", "met")

    def __init__(self, blobs: list[memoryview], backend: Base64Backend, limits: DecodeLimits) -> None:
        self.blobs = blobs
        self.met = [False] * len(blobs)
        self.backend = backend
        self.limits = limits

    def revive(self, fields: dict[str, Any]) -> Any:
        if ARRAY_KEY not in fields:
            return fields
        index = _placeholder_index(fields[ARRAY_KEY], len(self.blobs))
        if index is None:
            return _revive(fields, self.backend, self.limits)
        if self.met[index]:
            raise _Fallback
        self.met[index] = True
        return _array_of(fields, self.blobs[index], self.backend, self.limits)


def _escaped(data: bytes, quote_at: int) -> bool:
    """True when the quote at ``quote_at`` is escaped (preceded by an odd run of backslashes)."""
    run = 0
    while quote_at - run - 1 >= 0 and data[quote_at - run - 1] == 0x5C:
        run += 1
    return run % 2 == 1


def _placeholder_index(text: Any, count: int) -> int | None:
    if isinstance(text, str) and len(text) > 1 and text[0] == "#" and text[1:].isdecimal() and text[1:].isascii():
        index = int(text[1:])
        return index if index < count else None
    return None
