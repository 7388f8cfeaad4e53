"""One background thread that owns every call to a transport, in submission order.

Transports are not thread-safe (a ZeroMQ REQ socket, one WebSocket connection...). When a policy
queries in the background (prefetch), every call to its transport, background or not, goes through
this worker, so calls never overlap and keep their order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, TypeVar

import numpy as np
import torch

from arena_adapters.errors import AdapterError, TransportTimeout
from arena_adapters.host_memory import HostBuffers, numpy_dtype

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
