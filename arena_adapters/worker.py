"""One background thread that owns every call to a transport, in submission order.

Transports are not thread-safe (a ZeroMQ REQ socket, one WebSocket connection...). When a policy
queries in the background (prefetch), every call to its transport, background or not, goes through
this worker, so calls never overlap and keep their order.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, TypeVar

import numpy as np
import torch

from arena_adapters.errors import AdapterError, TransportTimeout
from arena_adapters.host_memory import numpy_dtype

try:
    from numpy.lib.array_utils import byte_bounds as _byte_bounds  # numpy >= 2
except ImportError:  # numpy 1.x
    _byte_bounds = np.byte_bounds

T = TypeVar("T")


class TransportWorker:
    """Runs callables on one thread, first in, first out."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"arena-adapters-{name}")
        self._closed = False
        self._lock = threading.Lock()
        self._unfinished = 0

    @property
    def backlog(self) -> int:
        """Calls submitted and not finished yet (queued or running)."""
        return self._unfinished

    def submit(self, function: Callable[[], T]) -> Future[T]:
        """Queue ``function``; its result (or exception) comes back through the future."""
        with self._lock:
            if self._closed:
                raise AdapterError("the policy's transport worker is closed")
            self._unfinished += 1
            future = self._executor.submit(function)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: Future[Any]) -> None:
        with self._lock:
            self._unfinished -= 1

    def call(self, function: Callable[[], T], timeout: float) -> T:
        """Run ``function`` on the worker after everything queued before it, and wait for it at
        most ``timeout`` seconds.

        Raises:
            TransportTimeout: it did not finish in time (it may still run; its result is dropped).
            whatever ``function`` raised.
        """
        future = self.submit(function)
        if not wait_futures([future], timeout=timeout).done:
            raise TransportTimeout(f"the policy's transport worker did not finish a call within {timeout:g} s")
        return future.result()

    def close(self) -> None:
        """Drop queued calls and let the thread end (a call in progress ends within its
        transport's timeout, or sooner once the transport is closed). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


class HostBuffers:
    """Host arrays reused for the copies that :func:`detach_from` makes.

    A fresh allocation of a few MB is fresh memory, and the kernel faults its pages in as the copy
    first writes them: copying camera images into a new array takes several times as long as into
    one used before. A buffer is handed out as a view of an array this object keeps, and handed out
    again only once nothing refers to it any more (no view, array or tensor made from it is alive:
    its reference count says so), so a request still being encoded, or an observation a local
    policy kept, is never overwritten. Thread-safe.

    Args:
        keep: at most this many unused arrays are kept per shape and dtype.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._arrays: dict[tuple[tuple[int, ...], np.dtype[Any]], list[np.ndarray[Any, Any]]] = {}
        self.allocated = 0
        """How many arrays were allocated (not reused) so far."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` that nothing else uses."""
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            arrays = self._arrays.setdefault(key, [])
            for array, references in zip(arrays, _reference_counts(arrays), strict=True):
                if references <= _UNUSED:
                    return array[...]
            array = np.empty(shape, dtype)
            self.allocated += 1
            if len(arrays) < self.keep:  # else it is dropped once its request is gone
                arrays.append(array)
            return array[...]


def _reference_counts(arrays: list[np.ndarray[Any, Any]]) -> list[int]:
    return [sys.getrefcount(array) for array in arrays]


_UNUSED = _reference_counts([np.empty(0)])[0]
"""The reference count of an array that only the list passed to :func:`_reference_counts` holds
(measured, as the interpreter's own references differ between Python versions)."""


def detach_from(request: Any, observation: Mapping[str, Any], buffers: HostBuffers | None = None) -> Any:
    """The request, with every array or tensor that shares memory with ``observation`` copied.

    A request sent in the background must not read env buffers that the next ``env.step()``
    overwrites in place, and translators may return views of them (a CPU tensor's ``.numpy()``, a
    row selection of every env). Arrays the translator made itself are not copied again. Host
    copies go into ``buffers`` (reused once their request is gone) when given.
    """
    spans = [_span_of_tensor(t) for t in _tensors(observation)]
    spans = [span for span in spans if span[1] > span[0]]
    return _detach(request, spans, buffers) if spans else request


def _detach(value: Any, spans: list[tuple[int, int]], buffers: HostBuffers | None) -> Any:
    if isinstance(value, np.ndarray):
        return _copy_array(value, buffers) if _overlaps(_span_of_array(value), spans) else value
    if isinstance(value, torch.Tensor):
        return _copy_tensor(value, buffers) if _overlaps(_span_of_tensor(value), spans) else value
    if isinstance(value, Mapping):
        return {key: _detach(item, spans, buffers) for key, item in value.items()}
    if isinstance(value, list):
        return [_detach(item, spans, buffers) for item in value]
    if isinstance(value, tuple):
        return tuple(_detach(item, spans, buffers) for item in value)
    return value


def _copy_array(array: np.ndarray[Any, Any], buffers: HostBuffers | None) -> np.ndarray[Any, Any]:
    if buffers is None or array.dtype.hasobject:
        return array.copy()
    copy = buffers.empty(array.shape, array.dtype)
    np.copyto(copy, array)
    return copy


def _copy_tensor(tensor: torch.Tensor, buffers: HostBuffers | None) -> torch.Tensor:
    dtype = numpy_dtype(tensor.dtype)
    if buffers is None or dtype is None or tensor.device.type != "cpu":
        return tensor.clone()  # device memory comes from torch's caching allocator: no page faults
    copy = torch.from_numpy(buffers.empty(tuple(tensor.shape), dtype))
    copy.copy_(tensor)
    return copy


def _tensors(node: Any) -> list[torch.Tensor]:
    if isinstance(node, torch.Tensor):
        return [node]
    if isinstance(node, Mapping):
        return [tensor for value in node.values() for tensor in _tensors(value)]
    return []


def _span_of_tensor(tensor: torch.Tensor) -> tuple[int, int]:
    storage = tensor.untyped_storage()
    start = storage.data_ptr()
    return start, start + storage.nbytes()


def _span_of_array(array: np.ndarray[Any, Any]) -> tuple[int, int]:
    low, high = _byte_bounds(array)
    return int(low), int(high)


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return span[1] > span[0] and any(span[0] < end and start < span[1] for start, end in spans)
