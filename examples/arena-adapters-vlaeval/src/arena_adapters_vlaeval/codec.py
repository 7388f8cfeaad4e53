"""The vla-eval wire format: one msgpack map per WebSocket binary frame.

A message is ``{"type": str, "payload": map, "seq": int, "timestamp": float}``; ``type`` is one of
:data:`MESSAGE_TYPES`. Inside a payload, numpy arrays travel as maps:

- ``{"__ndarray__": true, "data": <bin>, "dtype": "<f4", "shape": [...]}`` (C order);
- ``{"__image__": true, "format": "raw", "data": <bin>, "dtype": "|u1", "shape": [H, W, C]}``, or
  ``"format": "png" | "jpeg"`` with compressed ``data`` and the ``shape`` (HWC uint8 images only).

Only bool, int, uint and float arrays are allowed (the protocol's own rule). Decoding checks every
declared dtype, shape and size against :class:`~arena_adapters.plugin.DecodeLimits` before it
allocates anything, and every failure is a :class:`~arena_adapters.plugin.ProtocolError`.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
import numpy as np

from arena_adapters import plugin as ap

PROTOCOL_VERSION = 1
HELLO = "hello"
OBSERVATION = "observation"
ACTION = "action"
EPISODE_START = "episode_start"
EPISODE_END = "episode_end"
ERROR = "error"
MESSAGE_TYPES = frozenset({HELLO, OBSERVATION, ACTION, EPISODE_START, EPISODE_END, ERROR})

NDARRAY = "__ndarray__"
IMAGE = "__image__"
ARRAY_KINDS = frozenset("biuf")
"""The dtype kinds the protocol allows: bool, signed and unsigned ints, floats."""

ImageFormat = Literal["raw", "png", "jpeg"]
IMAGE_FORMATS: tuple[str, ...] = ("raw", "png", "jpeg")


@dataclass(frozen=True)
class Message:
    """One protocol message."""

    type: str
    payload: dict[str, Any]
    seq: int = 0
    timestamp: float = field(default_factory=time.time)


# ------------------------------------------------------------------------------- encoding


def pack(message: Message, image_format: ImageFormat = "raw") -> bytes:
    """The msgpack bytes of ``message``; HWC uint8 images are compressed with ``image_format``.

    Raises:
        ProtocolError: a value the protocol cannot carry (an object or string array, ...).
    """
    wire = {"type": message.type, "payload": message.payload, "seq": message.seq, "timestamp": message.timestamp}
    try:
        return msgpack.packb(wire, default=_Encoder(image_format), use_bin_type=True)  # type: ignore[no-any-return]
    except ap.ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise ap.ProtocolError(f"cannot encode a vla-eval {message.type} message: {exc}") from None


def is_image(array: np.ndarray[Any, Any]) -> bool:
    """The protocol's image rule: HWC uint8 with 1, 3 or 4 channels."""
    return array.ndim == 3 and array.dtype == np.uint8 and array.shape[2] in (1, 3, 4)


class _Encoder:
    def __init__(self, image_format: ImageFormat) -> None:
        self.image_format = image_format

    def __call__(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in ARRAY_KINDS:
                raise ap.ProtocolError(
                    f"cannot encode a {value.dtype} array: the vla-eval protocol carries bool/int/uint/float only")
            if self.image_format != "raw" and is_image(value):
                return encode_image(value, self.image_format)
            array = np.ascontiguousarray(value)
            return {NDARRAY: True, "data": array.tobytes(), "dtype": array.dtype.str, "shape": list(array.shape)}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return list(value)
        raise TypeError(f"cannot encode {type(value).__name__}")


def encode_image(image: np.ndarray[Any, Any], image_format: str) -> dict[str, Any]:
    """An HWC uint8 image as a compressed ``__image__`` map (needs Pillow)."""
    pil = _pillow()
    picture = pil.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        if picture.mode != "RGB":
            raise ap.ProtocolError(f"jpeg needs RGB images, got {image.shape[2]} channels: use image_format=png")
        picture.save(buffer, format="JPEG", quality=95)
    else:
        picture.save(buffer, format="PNG")
    return {IMAGE: True, "format": image_format, "data": buffer.getvalue(), "shape": list(image.shape)}


# ------------------------------------------------------------------------------- decoding


def unpack(data: bytes, limits: ap.DecodeLimits) -> Message:
    """The message in ``data``, decoded within ``limits``.

    Raises:
        ProtocolError: not a msgpack message map, a missing or mistyped field, an unknown type,
            or anything beyond ``limits``.
    """
    limits.check_message(len(data))
    try:
        raw = msgpack.unpackb(data, raw=False, object_hook=_ArrayHook(limits), strict_map_key=True,
                              use_list=True)
    except ap.ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError, RecursionError, OverflowError) as exc:
        raise ap.ProtocolError(f"not a vla-eval msgpack message ({len(data)} bytes): {_short(exc)}") from None
    check_depth(raw, limits)
    if not isinstance(raw, dict):
        raise ap.ProtocolError(f"a vla-eval message must be a map, got {ap.describe(raw)}")
    missing = [key for key in ("type", "payload", "seq", "timestamp") if key not in raw]
    if missing:
        raise ap.ProtocolError(f"vla-eval message lacks {missing} (keys: {sorted(map(str, raw))[:8]})")
    kind, payload, seq, timestamp = raw["type"], raw["payload"], raw["seq"], raw["timestamp"]
    if kind not in MESSAGE_TYPES:
        raise ap.ProtocolError(
            f"unknown vla-eval message type {_short(kind)}; expected one of {sorted(MESSAGE_TYPES)}")
    if not isinstance(payload, dict):
        raise ap.ProtocolError(f"vla-eval {kind} payload must be a map, got {ap.describe(payload)}")
    if type(seq) is not int:
        raise ap.ProtocolError(f"vla-eval {kind} seq must be an int, got {ap.describe(seq)}")
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        raise ap.ProtocolError(f"vla-eval {kind} timestamp must be a number, got {ap.describe(timestamp)}")
    return Message(kind, payload, seq, float(timestamp))


def check_depth(value: Any, limits: ap.DecodeLimits, depth: int = 0) -> None:
    """Refuse maps and lists nested deeper than ``limits.max_depth``."""
    if isinstance(value, (dict, list)):
        limits.check_depth(depth + 1)
        for item in value.values() if isinstance(value, dict) else value:
            if isinstance(item, (dict, list)):
                check_depth(item, limits, depth + 1)


class _ArrayHook:
    """msgpack ``object_hook``: array and image maps -> numpy arrays, checked before allocation."""

    def __init__(self, limits: ap.DecodeLimits) -> None:
        self.limits = limits

    def __call__(self, value: dict[str, Any]) -> Any:
        if value.get(NDARRAY) is True:
            return self.array(value, "ndarray")
        if value.get(IMAGE) is True:
            image_format = value.get("format")
            if image_format == "raw":
                return self.array(value, "raw image")
            if image_format in ("png", "jpeg"):
                return decode_image(value, self.limits)
            raise ap.ProtocolError(f"image format must be one of {list(IMAGE_FORMATS)}, got {_short(image_format)}")
        return value

    def array(self, value: Mapping[str, Any], what: str) -> np.ndarray[Any, Any]:
        data = value.get("data")
        if not isinstance(data, bytes):
            raise ap.ProtocolError(f"{what}: 'data' must be bytes, got {ap.describe(data)}")
        dtype, shape = self.limits.check_array(value.get("dtype"), value.get("shape"), len(data), what)
        if dtype.kind not in ARRAY_KINDS:
            raise ap.ProtocolError(f"{what}: dtype {dtype.str} is not allowed (bool/int/uint/float only)")
        return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_image(value: Mapping[str, Any], limits: ap.DecodeLimits) -> np.ndarray[Any, Any]:
    """A png/jpeg ``__image__`` map -> HWC uint8, its declared and real size checked before decoding."""
    data = value.get("data")
    if not isinstance(data, bytes):
        raise ap.ProtocolError(f"image: 'data' must be bytes, got {ap.describe(data)}")
    _, shape = limits.check_array("|u1", value.get("shape"), None, "image")
    if len(shape) != 3 or shape[2] not in (1, 3, 4):
        raise ap.ProtocolError(f"image: shape must be [H, W, 1|3|4], got {list(shape)}")
    pil = _pillow()
    try:
        picture = pil.open(io.BytesIO(data), formats=["PNG", "JPEG"])
        if picture.size != (shape[1], shape[0]):
            raise ap.ProtocolError(f"image: declared {list(shape)}, the data is {picture.size[1]}x{picture.size[0]}")
        array = np.asarray(picture)
    except ap.ProtocolError:
        raise
    except Exception as exc:  # Pillow raises many kinds for a broken file
        raise ap.ProtocolError(f"image: undecodable {value.get('format')}: {_short(exc)}") from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape != shape or array.dtype != np.uint8:
        raise ap.ProtocolError(f"image: declared {list(shape)} uint8, decoded {list(array.shape)} {array.dtype}")
    return array


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency; this names it if it is gone
        raise ap.ProtocolError("png/jpeg images need Pillow: pip install pillow") from None
    return Image


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= 200 else text[:197] + "..."
