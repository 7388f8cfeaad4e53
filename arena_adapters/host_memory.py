"""Host memory for the batches observation translators send: fresh buffers that are cheap to fill,
and one device -> host copy per field with one synchronisation per query.

Filling a freshly allocated buffer costs a page fault per page first touched. torch's CPU allocator
maps large blocks (over glibc's mmap threshold, 32 MiB at most) anew for every batch, in 4 KiB pages;
numpy asks the kernel for transparent huge pages (``madvise``) on large allocations, so a batch of
camera rows written into numpy-allocated memory costs a few times less on a machine where the
kernel grants them (``/sys/kernel/mm/transparent_hugepage/enabled``: ``madvise`` or ``always``).
:func:`to_host`'s buffers are never reused across queries (a request may still be in flight when
the next is built); :class:`HostBuffers` hands out reused ones, each only once nothing refers to it.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

_NUMPY_DTYPES: dict[torch.dtype, type[np.generic]] = {
    torch.bool: np.bool_,
    torch.uint8: np.uint8,
    torch.int8: np.int8,
    torch.int16: np.int16,
    torch.int32: np.int32,
    torch.int64: np.int64,
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
}


def numpy_dtype(dtype: torch.dtype) -> np.dtype[Any] | None:
    """The numpy dtype of a torch dtype, or None where numpy has none (bfloat16, complex32, ...)."""
    kind = _NUMPY_DTYPES.get(dtype)
    return None if kind is None else np.dtype(kind)


NUMPY_ALLOCATION_BYTES = 1 << 20
"""Buffers of at least this size are allocated by numpy; smaller ones come from torch's heap, where
freed pages are reused and nothing is gained."""


def empty(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor; numpy allocates it when it holds
    :data:`NUMPY_ALLOCATION_BYTES` or more (see the module docstring) and numpy has the dtype
    (not bfloat16 or complex)."""
    shape = tuple(shape)
    host_dtype = numpy_dtype(dtype)
    if host_dtype is None or math.prod(shape) * dtype.itemsize < NUMPY_ALLOCATION_BYTES:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.empty(shape, dtype=host_dtype))


def to_host(tensors: Sequence[torch.Tensor]) -> list[NDArray[Any]]:
    """C-contiguous host numpy arrays of ``tensors``, in order.

    CPU tensors are returned as they are when contiguous (no copy), else copied once. cuda tensors
    are copied once each, asynchronously into pinned memory from torch's caching host allocator,
    with one synchronisation per device for all of them. Other devices copy synchronously.
    """
    if all(t.device.type == "cpu" and not t.requires_grad and t.is_contiguous() for t in tensors):
        return [tensor.numpy() for tensor in tensors]
    host: list[torch.Tensor] = []
    synchronise: set[torch.device] = set()
    for tensor in tensors:
        tensor = tensor.detach()
        if tensor.device.type == "cpu":
            host.append(tensor if tensor.is_contiguous() else empty(tensor.shape, tensor.dtype).copy_(tensor))
        elif tensor.device.type == "cuda":
            # non_blocking device -> host copies land in pinned memory (torch's caching host allocator)
            host.append(tensor.contiguous().to("cpu", non_blocking=True))
            synchronise.add(tensor.device)
        else:
            host.append(tensor.to("cpu").contiguous())
    for device in synchronise:
        torch.cuda.current_stream(device).synchronize()
    return [tensor.numpy() for tensor in host]


class HostBuffers:
    """Host arrays reused for copies of large batches: the copies that
    :func:`~arena_adapters.worker.detach_from` makes, and frames a transport assembles.

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

    def frame(self, nbytes: int) -> NDArray[np.uint8]:
        """An uninitialised ``uint8`` array of ``nbytes`` that nothing else uses: a view of a kept
        array whose size is ``nbytes`` rounded up to one eighth of its power of two, so that frames
        of nearly equal sizes (batches of a few envs more or less) share buffers."""
        step = 1 << max(0, nbytes.bit_length() - 4)
        capacity = -(-max(nbytes, 1) // step) * step
        return self.empty((capacity,), np.dtype(np.uint8))[:nbytes]


def _reference_counts(arrays: list[np.ndarray[Any, Any]]) -> list[int]:
    return [sys.getrefcount(array) for array in arrays]


_UNUSED = _reference_counts([np.empty(0)])[0]
"""The reference count of an array that only the list passed to :func:`_reference_counts` holds
(measured, as the interpreter's own references differ between Python versions)."""
