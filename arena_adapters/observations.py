"""Reading Isaac Lab style observations: key paths, shape/dtype checks with clear errors, row picks.

Observation translators use these so that every bad input is reported the same way: the key, what
was expected and what arrived, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from arena_adapters import host_memory
from arena_adapters.errors import ObservationError
from arena_adapters.parts import Observation, Query

Dim = int | str | None
"""One expected dimension: an exact size, a name (any size, shown in messages), or ``None``."""


def lookup(observation: Observation, path: str) -> Any:
    """Return the value at ``path`` (``"policy.joint_pos"`` or ``"policy/joint_pos"``).

    Raises:
        ObservationError: a key on the path is missing; the message lists the keys that exist.
    """
    node: Any = observation
    walked: list[str] = []
    for key in path.replace("/", ".").split("."):
        if not isinstance(node, Mapping):
            raise ObservationError(
                f"observation {'.'.join(walked)!r} is a {type(node).__name__}, not a dict: cannot read {path!r}"
            )
        if key not in node:
            where = ".".join(walked) or "the observation"
            raise ObservationError(
                f"observation key {path!r} is missing: {where} has keys {sorted(map(str, node))}"
            )
        node = node[key]
        walked.append(key)
    return node


def describe(value: Any) -> str:
    """``"float32 (8, 7) on cpu"`` for a tensor; the type name otherwise."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{dtype} {tuple(value.shape)} on {value.device}"
    shape, array_dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and array_dtype is not None:
        return f"{array_dtype} {tuple(shape)} ({type(value).__name__})"
    return type(value).__name__


def _shape_text(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def require_tensor(
    value: Any,
    key: str,
    *,
    dtypes: Sequence[torch.dtype] | None = None,
    shape: Sequence[Dim] | None = None,
) -> torch.Tensor:
    """Check that ``value`` is a tensor of one of ``dtypes`` and of ``shape``; return it.

    ``shape`` entries are exact sizes, or names/``None`` for any size. The leading entry is usually
    ``"num_envs"``.

    Raises:
        ObservationError: naming ``key``, the expected dtype/shape and what arrived.
    """
    expected = ""
    if dtypes:
        expected += "/".join(str(d).removeprefix("torch.") for d in dtypes)
    if shape is not None:
        expected += (" " if expected else "") + _shape_text(shape)
    if not isinstance(value, torch.Tensor):
        raise ObservationError(f"observation {key!r}: expected a torch.Tensor {expected}, got {describe(value)}")
    bad_dtype = dtypes is not None and value.dtype not in dtypes
    bad_shape = shape is not None and (
        value.ndim != len(shape)
        or any(isinstance(d, int) and d != n for d, n in zip(shape, value.shape, strict=True))
    )
    if bad_dtype or bad_shape:
        raise ObservationError(f"observation {key!r}: expected {expected}, got {describe(value)}")
    return value


def require_batch(value: torch.Tensor, key: str, num_envs: int) -> None:
    """Check that ``value``'s first axis is ``num_envs``."""
    if value.ndim == 0 or value.shape[0] != num_envs:
        raise ObservationError(
            f"observation {key!r}: expected num_envs={num_envs} rows first, got {describe(value)}"
        )


def select_rows(value: torch.Tensor, query: Query) -> torch.Tensor:
    """The rows of the queried envs (no copy when every env is queried).

    On the CPU, rows of :data:`~arena_adapters.host_memory.NUMPY_ALLOCATION_BYTES` or more are
    gathered into memory from :func:`arena_adapters.host_memory.empty`, which is several times
    cheaper to fill than a fresh torch allocation for camera batches.
    """
    if query.is_all_envs:
        return value
    device = value.device
    rows = query.env_ids.to(device)
    if (device.type == "cpu" and value.nbytes * query.size >= host_memory.NUMPY_ALLOCATION_BYTES * query.num_envs
            and not value.requires_grad):
        out = host_memory.empty((query.size, *value.shape[1:]), value.dtype)
        return torch.index_select(value, 0, rows, out=out)
    return value.index_select(0, rows)


def batch_size_and_device(observation: Observation) -> tuple[int, torch.device]:
    """num_envs and device of the first tensor found in a nested observation.

    Raises:
        ObservationError: the observation holds no tensor, or one without a first axis.
    """
    tensor = first_tensor(observation)
    if tensor is None:
        raise ObservationError(
            "the observation holds no torch.Tensor: expected nested dicts of (num_envs, ...) tensors"
        )
    if tensor.ndim == 0:
        raise ObservationError(f"observation tensors need num_envs first, got {describe(tensor)}")
    return int(tensor.shape[0]), tensor.device


def first_tensor(observation: Observation) -> torch.Tensor | None:
    """The first tensor of a nested observation, breadth first (``None`` when it holds none)."""
    stack: list[Any] = [observation]
    while stack:
        node = stack.pop(0)
        if isinstance(node, torch.Tensor):
            return node
        if isinstance(node, Mapping):
            stack.extend(node.values())
    return None
