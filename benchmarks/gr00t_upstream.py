"""The upstream GR00T serializer's work (``np.save`` per array inside msgpack), written here as the
baseline of the GR00T benchmarks. Not upstream code: the same steps, for timing."""

from __future__ import annotations

import io
from typing import Any

import msgpack
import numpy as np


def upstream_encode(value: Any) -> bytes:
    """msgpack with ``np.save`` for every array, as the upstream serializer does."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, obj, allow_pickle=False)
            return {"__ndarray_class__": True, "as_npy": buffer.getvalue()}
        return obj

    return msgpack.packb(value, default=default)


def upstream_decode(frame: bytes) -> Any:
    """msgpack with ``np.load`` for every array, as the upstream deserializer does."""

    def hook(obj: dict[str, Any]) -> Any:
        if "__ndarray_class__" in obj:
            return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
        return obj

    return msgpack.unpackb(frame, object_hook=hook)
