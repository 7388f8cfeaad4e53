"""What a benchmark section returns, and how sections are found and run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arena_adapters.errors import ConfigError
from arena_adapters.importing import import_object


@dataclass(frozen=True)
class BenchSettings:
    """How big and how long the measurements are.

    Attributes:
        quick: tiny sizes and few repetitions (a smoke run: seconds, numbers only indicative).
        device: torch device for the sections that use one.
        adapters: the adapters to measure, in the sections that measure adapters (empty: every
            one installed).
    """

    quick: bool = False
    device: str = "cpu"
    adapters: tuple[str, ...] = ()


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


def load_results(paths: Iterable[str | Path]) -> list[SectionResult]:
    """The sections recorded in one or more ``arena-adapters bench --json`` files, in order of
    appearance; a section found in several files (a run split with ``--section``, or measured on
    several calls) has their rows joined, and is skipped only if it has no rows at all.

    Raises:
        ConfigError: a file cannot be read, or it is not what ``bench --json`` writes.
    """
    rows: dict[str, list[Row]] = {}
    skipped: dict[str, str | None] = {}
    wall_s: dict[str, float] = {}
    for path in paths:
        try:
            sections = json.loads(Path(path).read_text())["sections"]
            for section in sections:
                name = str(section["name"])
                rows.setdefault(name, []).extend(_row(row) for row in section["rows"])
                skipped[name] = skipped.get(name) or section.get("skipped")
                wall_s[name] = wall_s.get(name, 0.0) + float(section.get("wall_s", 0.0))
        except OSError as exc:
            raise ConfigError(f"bench: cannot read {str(path)!r}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"bench: {str(path)!r} is not what `bench --json` writes "
                              f"({type(exc).__name__}: {exc})") from None
    return [SectionResult(name, section_rows, None if section_rows else skipped[name], wall_s[name])
            for name, section_rows in rows.items()]


def _row(data: Mapping[str, Any]) -> Row:
    return Row(str(data["section"]), str(data["name"]), float(data["ours_s"]), float(data["baseline_s"]),
               str(data["baseline"]), dict(data.get("extra") or {}))
