"""What a benchmark section returns, and how sections are found and run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from arena_adapters.importing import import_object


@dataclass(frozen=True)
class BenchSettings:
    """How big and how long the measurements are.

    Attributes:
        quick: tiny sizes and few repetitions (a smoke run: seconds, numbers only indicative).
        device: torch device for the sections that use one.
    """

    quick: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class Row:
    """One measurement: ours and the baseline, in seconds per operation, in the same run.

    Attributes:
        section: the section that measured it.
        name: what was measured (operation and size).
        ours_s: the median seconds per operation, ours.
        baseline_s: the median seconds per operation, the baseline's.
        baseline: what the baseline is.
        ratio: ``baseline_s / ours_s`` (above 1: ours is faster).
        extra: further numbers (a floor, a count, a unit), by name.
    """

    section: str
    name: str
    ours_s: float
    baseline_s: float
    baseline: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """``baseline_s / ours_s``."""
        return self.baseline_s / self.ours_s if self.ours_s > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data (with ``ratio``)."""
        data = asdict(self)
        data["extra"] = dict(self.extra)
        data["ratio"] = self.ratio
        return data


class SectionSkipped(Exception):
    """A section cannot run here (a plugin or peer library is not installed); the message says why."""


@dataclass(frozen=True)
class SectionResult:
    """The rows of one section, or why it was skipped, and how long it took."""

    name: str
    rows: list[Row]
    skipped: str | None
    wall_s: float


def load_section(target: str) -> Callable[[BenchSettings], list[Row]]:
    """The section function named by ``"module:function"``."""
    function: Callable[[BenchSettings], list[Row]] = import_object(target)
    return function


def run_sections(
    sections: Mapping[str, str], settings: BenchSettings, only: Iterable[str] | None = None
) -> list[SectionResult]:
    """Run the sections (all, or those in ``only``) in order."""
    wanted = set(only) if only is not None else None
    results = []
    for name, target in sections.items():
        if wanted is not None and name not in wanted:
            continue
        started = time.perf_counter()
        try:
            rows = load_section(target)(settings)
            skipped = None
        except SectionSkipped as exc:
            rows, skipped = [], str(exc)
        results.append(SectionResult(name, rows, skipped, time.perf_counter() - started))
    return results
