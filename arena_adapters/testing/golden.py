"""Reading the golden wire vectors recorded from the real upstream encoders and servers.

The vectors live in ``shared/golden`` beside the repository (see its README): ``cases.json`` plus
one ``.bin`` per case. This module finds them, rebuilds each case's Python value from its TREE
notation, and compares decoded values strictly (dtype, shape, memory order, Python types, key order).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

GOLDEN_DIR_ENV = "ARENA_ADAPTERS_GOLDEN_DIR"


def find_golden_dir(start: Path | str | None = None) -> Path | None:
    """The golden directory: ``$ARENA_ADAPTERS_GOLDEN_DIR``, else the first ``shared/golden`` found
    beside ``start`` or any of its parents (default: this file)."""
    override = os.environ.get(GOLDEN_DIR_ENV)
    if override:
        return Path(override)
    here = Path(start or __file__).resolve()
    for parent in [here, *here.parents]:
        candidate = parent / "shared" / "golden" / "cases.json"
        if candidate.is_file():
            return candidate.parent
    return None


def golden_dir_or_skip(start: Path | str | None = None) -> Path:
    """:func:`find_golden_dir`, or skip the calling test with the reason when the vectors are absent
    (a fresh clone without ``shared/``): what the ``golden_dir`` fixture returns."""
    directory = find_golden_dir(start)
    if directory is None or not (directory / "cases.json").is_file():
        import pytest

        where = directory if directory is not None else "shared/golden beside the repository"
        pytest.skip(f"golden vectors not found: {where} has no cases.json (set ${GOLDEN_DIR_ENV} to their folder)")
    return directory


@dataclass(frozen=True)
class GoldenCase:
    """One golden vector: its ``cases.json`` entry and its bytes."""

    entry: dict[str, Any]
    directory: Path

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def protocol(self) -> str:
        return str(self.entry["protocol"])

    @property
    def compare(self) -> str:
        """``"bytes"``, ``"decoded"`` or ``"prefix"``."""
        return str(self.entry["compare"])

    @property
    def direction(self) -> str:
        return str(self.entry["direction"])

    @cached_property
    def data(self) -> bytes:
        """The recorded bytes."""
        return (self.directory / str(self.entry["file"])).read_bytes()

    @property
    def message(self) -> Any:
        """The TREE of the decoded value (use :func:`rebuild`)."""
        return self.entry.get("message")

    @property
    def input(self) -> Any:
        """The TREE of the encoder's input: ``input`` if present, else ``message``."""
        return self.entry.get("input", self.entry.get("message"))

    def __repr__(self) -> str:
        return f"GoldenCase({self.name})"


def load_cases(directory: Path, protocol: str | None = None) -> list[GoldenCase]:
    """Every case of ``cases.json`` (of one protocol if given), in file order."""
    entries = json.loads((directory / "cases.json").read_text())
    return [GoldenCase(e, directory) for e in entries if protocol is None or e["protocol"] == protocol]


@dataclass(frozen=True)
class GoldenJson:
    """A ``$json`` marker rebuilt without an encoder: a string holding json_numpy text of ``value``."""

    value: Any
    separators: tuple[str, str]


def ramp(dtype: np.dtype[Any], shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """The README's ``"ramp"`` fill of ``dtype`` and ``shape`` (C order)."""
    count = int(np.prod(shape)) if shape else 1
    index = np.arange(count)
    if dtype.kind == "b":
        values: npt.NDArray[Any] = (index % 2).astype(bool)
    elif dtype.kind in "iu":
        values = index % 251
    else:
        values = index * 0.25 - 3.0
    return values.astype(dtype).reshape(shape)


def rebuild_array(spec: dict[str, Any]) -> npt.NDArray[Any]:
    """Build the numpy array an ``{"$array": spec}`` marker stands for."""
    dtype = np.dtype(spec["dtype"])
    shape = tuple(int(n) for n in spec["shape"])
    fill = spec["fill"]
    if fill == "ramp":
        array = ramp(dtype, shape)
    elif fill == "zeros":
        array = np.zeros(shape, dtype)
    elif fill == "values":
        array = np.array(spec["values"], dtype=dtype).reshape(shape)
    else:
        raise ValueError(f"unknown fill {fill!r}")
    return array.copy(order="F" if spec.get("order") == "F" else "C")


def rebuild(
    tree: Any,
    *,
    on_map: Callable[[dict[str, Any]], Any] | None = None,
    on_json: Callable[[Any, tuple[str, str]], str] | None = None,
) -> Any:
    """Rebuild the Python value of a TREE (README §2-3).

    Args:
        tree: the ``message`` or ``input`` of a case.
        on_map: applied to every rebuilt plain dict (e.g. to turn GR00T ModalityConfig maps into
            objects); returns the value to use.
        on_json: encodes a ``$json`` marker's value to its string; without it a :class:`GoldenJson`
            stands in.
    """
    if isinstance(tree, list):
        return [rebuild(item, on_map=on_map, on_json=on_json) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        (key, body), = tree.items()
        if key == "$array":
            return rebuild_array(body)
        if key == "$scalar":
            return np.dtype(body["dtype"]).type(body["value"])
        if key == "$bytes":
            return bytes.fromhex(body)
        if key == "$tuple":
            return tuple(rebuild(item, on_map=on_map, on_json=on_json) for item in body)
        if key == "$json":
            value = rebuild(body["value"], on_map=on_map, on_json=on_json)
            separators = (body["separators"][0], body["separators"][1])
            return on_json(value, separators) if on_json else GoldenJson(value, separators)
    rebuilt = {key: rebuild(value, on_map=on_map, on_json=on_json) for key, value in tree.items()}
    return on_map(rebuilt) if on_map else rebuilt


def strict_differences(actual: Any, expected: Any, path: str = "$") -> Iterator[str]:
    """Yield every difference between two values, compared strictly: exact Python types, dict key
    order, array dtype string, shape, memory order and element values (NaN equals NaN)."""
    if type(actual) is not type(expected):
        yield f"{path}: type {type(actual).__name__} != {type(expected).__name__} ({actual!r} vs {expected!r})"
        return
    if isinstance(expected, np.ndarray):
        if actual.dtype.str != expected.dtype.str:
            yield f"{path}: dtype {actual.dtype.str} != {expected.dtype.str}"
        elif actual.shape != expected.shape:
            yield f"{path}: shape {actual.shape} != {expected.shape}"
        elif _order(actual) != _order(expected):
            yield f"{path}: memory order {_order(actual)} != {_order(expected)}"
        elif not _same_elements(actual, expected):
            yield f"{path}: values differ"
    elif isinstance(expected, np.generic):
        if actual.dtype.str != expected.dtype.str or not _same_elements(np.asarray(actual), np.asarray(expected)):
            yield f"{path}: scalar {actual!r} ({actual.dtype.str}) != {expected!r} ({expected.dtype.str})"
    elif isinstance(expected, dict):
        if list(actual) != list(expected):
            yield f"{path}: keys {list(actual)} != {list(expected)}"
            return
        for key in expected:
            yield from strict_differences(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        if len(actual) != len(expected):
            yield f"{path}: length {len(actual)} != {len(expected)}"
            return
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            yield from strict_differences(a, e, f"{path}[{index}]")
    elif isinstance(expected, float) and expected != expected:
        if actual == actual:
            yield f"{path}: {actual!r} != nan"
    elif actual != expected:
        yield f"{path}: {actual!r} != {expected!r}"


def assert_strictly_equal(actual: Any, expected: Any) -> None:
    """Raise ``AssertionError`` listing every strict difference (see :func:`strict_differences`)."""
    differences = list(strict_differences(actual, expected))
    assert not differences, "\n".join(differences[:20])


def _same_elements(actual: npt.NDArray[Any], expected: npt.NDArray[Any]) -> bool:
    """Element-wise equality where NaN equals NaN and NaT equals NaT."""
    if expected.dtype.kind in "mM":
        return bool(np.array_equal(actual.view(np.int64), expected.view(np.int64)))
    return bool(np.array_equal(actual, expected, equal_nan=expected.dtype.kind in "fc"))


def _order(array: npt.NDArray[Any]) -> str:
    if array.ndim <= 1 or array.flags.c_contiguous:
        return "C"
    return "F" if array.flags.f_contiguous else "strided"
