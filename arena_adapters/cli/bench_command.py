"""``arena-adapters bench``: side-by-side benchmarks, one table, optional JSON.

Runs the sections of :data:`arena_adapters.bench.SECTIONS` (scheduler, prefetch, codecs, ...) and
prints every row with ours and the baseline as absolute medians and their ratio, measured in the
same run. ``--quick`` runs tiny sizes (seconds; a smoke test, not numbers to quote).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from arena_adapters.bench import SECTIONS, BenchSettings, run_sections
from arena_adapters.bench.rows import SectionResult
from arena_adapters.cli.command import Command
from arena_adapters.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (seconds)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--section", action="append", metavar="NAME",
                        help=f"run only this section (repeatable; one of {', '.join(SECTIONS)})")
    parser.add_argument("--device", default="cpu", help="torch device for the sections that use one (default cpu)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise ConfigError(f"bench: unknown argument(s) {extra}")
    unknown = sorted(set(args.section or ()) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"bench: unknown section(s) {unknown}; sections: {list(SECTIONS)}")
    settings = BenchSettings(quick=args.quick, device=args.device)
    print(f"arena-adapters bench{' --quick' if args.quick else ''} on {_machine()['description']}")
    results = run_sections(SECTIONS, settings, args.section)
    print(format_table(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(as_json(results, settings), indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1.0:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


RATIO_NOTES = (
    ("ceiling", "ceiling"),
    ("bound", "bound"),
    ("limit_vs_arena", "local adapter"),
    ("zero_cost_bound", "a client costing nothing"),
    ("cost_vs_arena", "cost per step beyond the env: Arena-style / ours"),
)
"""Ratios a row's ``extra`` may hold, in the order of its notes, with their labels."""


def _notes(extra: dict[str, Any]) -> str:
    notes = [f"floor {_seconds(extra['floor_s'])}"] if "floor_s" in extra else []
    notes += [f"{label} {extra[key]:.2f}x" for key, label in RATIO_NOTES if key in extra]
    return ", ".join(notes)


def format_table(results: list[SectionResult]) -> str:
    """One text table of every row (sections skipped are listed with their reason)."""
    header = ("section", "measurement", "ours", "baseline", "ratio", "baseline is / notes")
    lines: list[tuple[str, ...]] = [header]
    for result in results:
        if result.skipped is not None:
            lines.append((result.name, "(skipped)", "", "", "", result.skipped))
        for row in result.rows:
            notes = _notes(dict(row.extra))
            lines.append((row.section, row.name, _seconds(row.ours_s), _seconds(row.baseline_s),
                          f"{row.ratio:.2f}x", row.baseline + (f"; {notes}" if notes else "")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = []
    for line in lines:
        cells = [
            cell.rjust(width) if i >= 2 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=False))
        ]
        text.append("  ".join(cells) + "  " + line[-1])
    return "\n".join(text) + "\nratio = baseline / ours (above 1: ours is faster); times are medians"


def _machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    description = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    if torch.cuda.is_available():
        description += f", {torch.cuda.get_device_name(0)}"
    return {"description": description, "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__}


def as_json(results: list[SectionResult], settings: BenchSettings) -> dict[str, Any]:
    """The results as JSON-ready data: machine, settings, and each section's rows."""
    return {
        "machine": _machine(),
        "settings": {"quick": settings.quick, "device": settings.device},
        "sections": [
            {"name": r.name, "skipped": r.skipped, "wall_s": r.wall_s, "rows": [row.as_dict() for row in r.rows]}
            for r in results
        ],
    }


COMMAND = Command("bench", "side-by-side benchmarks: ours vs the baselines, one table (and JSON)", add_arguments, run)
