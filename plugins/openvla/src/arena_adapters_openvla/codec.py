"""A fast JSON codec compatible with json_numpy, the array format of OpenVLA's ``deploy.py``.

A numpy array (or numpy scalar) travels as a JSON object::

    {"__numpy__": "<base64 of the raw C-order bytes>", "dtype": "<descr, e.g. |u1>", "shape": [224, 224, 3]}

A numpy scalar has ``"shape": []`` and decodes back to a numpy scalar. Everything else is plain JSON
with json's own rules (``np.float64`` is a Python float subclass and is written as a plain number,
``np.int64`` is not and becomes an array object), exactly as ``json_numpy.dumps`` writes it.

The encoder writes the JSON bytes directly: one base64 pass per array, no ``str`` round trip and no
escaping pass over the base64 text. The decoder cuts the base64 strings of large bodies out before
the JSON parser sees them, then decodes each with one base64 call; decoded arrays are read-only
views of the decoded bytes, like json_numpy's. Object dtypes are refused in both directions.

Nothing here touches the ``json`` module's globals (no ``json_numpy.patch()``).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np
from numpy.lib.format import descr_to_dtype, dtype_to_descr
from numpy.typing import NDArray

from arena_adapters.errors import AdapterError, ProtocolError
from arena_adapters_openvla import base64_backend
from arena_adapters_openvla.base64_backend import Base64Backend

ARRAY_KEY = "__numpy__"
REQUEST_SEPARATORS = (", ", ": ")
"""What ``requests.post(url, json=...)`` writes after ``json_numpy.patch()`` (upstream clients)."""
REPLY_SEPARATORS = (",", ":")
"""What starlette's ``JSONResponse`` writes (upstream ``deploy.py`` replies)."""

_FAST_PATH_MIN_BYTES = 2048
_QUOTED_ARRAY_KEY = b'"__numpy__"'
_JSON_WHITESPACE = b" \t\n\r"


class EncodeError(AdapterError, TypeError):
    """A value cannot be written as json_numpy JSON (an object dtype, an unsupported type)."""


class DecodeError(ProtocolError):
    """Bytes are not json_numpy JSON: invalid JSON, or an array object that cannot be rebuilt."""


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
    shape = array.shape
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    raw = array.reshape(-1).view(np.uint8) if array.size and dtype.itemsize else b""
    out.append(framing.array_open)
    out.append(backend.encode(raw))
    out.append(framing.array_dtype)
    if dtype.names is None:
        out.append(encode_basestring_ascii(dtype.str).encode("ascii"))
    else:
        _write(dtype_to_descr(dtype), out, framing, backend)  # type: ignore[no-untyped-call]
    out.append(framing.array_shape)
    out.append(b"[" + framing.item.join(b"%d" % n for n in shape) + b"]}")


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


def decode(data: bytes | bytearray | memoryview | str, *, backend: Base64Backend | None = None) -> Any:
    """Decode json_numpy JSON text (an HTTP body) into Python values and read-only numpy arrays.

    Raises:
        DecodeError: invalid JSON, or an array object that cannot be rebuilt (bad base64, a size
            that does not match dtype and shape, an object dtype).
    """
    try:
        return loads(data, backend=backend)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid JSON text encoding: {exc}") from exc


def loads(data: bytes | bytearray | memoryview | str, *, backend: Base64Backend | None = None) -> Any:
    """Like :func:`decode`, but invalid JSON raises ``json.JSONDecodeError`` as ``json.loads`` does
    (the reference server relies on this to answer 422 exactly like FastAPI)."""
    backend = backend or base64_backend.DEFAULT
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if isinstance(data, str):
        if len(data) >= _FAST_PATH_MIN_BYTES and data.isascii():
            data = data.encode("ascii")
        else:
            return json.loads(data, object_hook=lambda fields: _revive(fields, backend))
    if len(data) >= _FAST_PATH_MIN_BYTES:
        found = _loads_cut(data, backend)
        if found is not None:
            return found[0]
    return json.loads(data, object_hook=lambda fields: _revive(fields, backend))


def _revive(fields: dict[str, Any], backend: Base64Backend) -> Any:
    """json_numpy's rule: any JSON object with a ``__numpy__`` key is an array."""
    if ARRAY_KEY not in fields:
        return fields
    text = fields[ARRAY_KEY]
    if not isinstance(text, str):
        raise DecodeError(f"json_numpy object: '__numpy__' must be a base64 str, got {type(text).__name__}")
    return _array_of(fields, _b64decode(text, backend))


def _b64decode(text: Any, backend: Base64Backend) -> bytes:
    try:
        return backend.decode_strict(text)
    except (binascii.Error, ValueError):
        try:
            return backend.decode_lenient(text)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"json_numpy object: invalid base64 data: {exc}") from exc


def _array_of(fields: Mapping[str, Any], raw: bytes) -> NDArray[Any] | np.generic:
    try:
        descr, shape = fields["dtype"], fields["shape"]
    except KeyError as exc:
        raise DecodeError(f"json_numpy object without {exc.args[0]!r}: keys {sorted(fields)}") from None
    dtype = _dtype_of(descr)
    try:
        array = np.frombuffer(raw, dtype)
        return array.reshape(shape) if shape else array[0]
    except (ValueError, TypeError, IndexError) as exc:
        raise DecodeError(
            f"json_numpy object: {len(raw)} bytes do not make dtype {descr!r} shape {shape!r}: {exc}"
        ) from exc


_DTYPES: dict[str, np.dtype[Any]] = {}


def _dtype_of(descr: Any) -> np.dtype[Any]:
    if isinstance(descr, str):
        dtype = _DTYPES.get(descr)
        if dtype is not None:
            return dtype
    try:
        dtype = np.dtype(descr) if isinstance(descr, str) else descr_to_dtype(descr)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise DecodeError(f"json_numpy object: invalid dtype {descr!r}: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError(f"json_numpy object: dtype {descr!r} holds Python objects; refused")
    if isinstance(descr, str) and len(_DTYPES) < 256:
        _DTYPES[descr] = dtype
    return dtype


class _Fallback(Exception):
    """The cut-out fast path met something unusual; decode the whole text the plain way."""


def _loads_cut(data: bytes, backend: Base64Backend) -> tuple[Any] | None:
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
    met = [False] * len(blobs)

    def revive(fields: dict[str, Any]) -> Any:
        if ARRAY_KEY not in fields:
            return fields
        index = _placeholder_index(fields[ARRAY_KEY], len(blobs))
        if index is None:
            return _revive(fields, backend)
        if met[index]:
            raise _Fallback
        met[index] = True
        return _array_of(fields, _b64decode(blobs[index], backend))

    try:
        value = json.loads(b"".join(pieces), object_hook=revive)
    except (_Fallback, json.JSONDecodeError, DecodeError):
        return None
    return (value,) if all(met) else None


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
