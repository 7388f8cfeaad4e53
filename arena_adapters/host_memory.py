"""Host memory for the batches observation translators send: fresh buffers that are cheap to fill,
and one device -> host copy per field with one synchronisation per query.

Filling a freshly allocated buffer costs a page fault per page first touched. torch's CPU allocator
maps large blocks (over glibc's mmap threshold, 32 MiB at most) anew for every batch, in 4 KiB pages;
numpy asks the kernel for transparent huge pages (``madvise``) on large allocations, so a batch of
camera rows written into numpy-allocated memory costs a few times less on a machine where the
kernel grants them (``/sys/kernel/mm/transparent_hugepage/enabled``: ``madvise`` or ``always``).
Buffers are never reused across queries: a request may still be in flight when the next is built.
"""

from __future__ import annotations

import math
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
