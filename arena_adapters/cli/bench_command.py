"""``arena-adapters bench``: side-by-side benchmarks, one table, optional JSON and Markdown.

Runs the sections of :data:`arena_adapters.bench.SECTIONS` (scheduler, prefetch, codecs, ...) and
prints every row with ours and the baseline as absolute medians and their ratio, measured in the
same run. ``--quick`` runs tiny sizes (seconds; a smoke test, not numbers to quote). ``--markdown``
also writes the tables of ``docs/benchmarks.md``; ``--from-json`` measures nothing and formats
recorded runs instead (several files are merged: a run split with ``--section``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from arena_adapters.bench import SECTIONS, BenchSettings, run_sections
from arena_adapters.bench.end_to_end import ADAPTERS
from arena_adapters.bench.rows import SectionResult, load_results
from arena_adapters.bench.tables import format_table, markdown_tables
from arena_adapters.cli.command import Command
from arena_adapters.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (seconds)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--section", action="append", metavar="NAME",
                        help=f"run only this section (repeatable; one of {', '.join(SECTIONS)})")
    parser.add_argument("--device", default="cpu", help="torch device for the sections that use one (default cpu)")
    parser.add_argument("--adapter", action="append", metavar="NAME",
                        help="only this adapter in the end-to-end section (repeatable; default: every one installed)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the results as Markdown tables to PATH")
    parser.add_argument("--from-json", action="append", metavar="PATH",
                        help="measure nothing: print (and --markdown) the results recorded in PATH "
                             "by --json (repeatable: the files are merged)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise ConfigError(f"bench: unknown argument(s) {extra}")
    if args.from_json:
        if args.quick or args.section or args.json or args.adapter or args.device != "cpu":
            raise ConfigError("bench: --from-json formats recorded results; it takes only --markdown")
        results = load_results(args.from_json)
        print(format_table(results))
        _write(args.markdown, markdown_tables(results))
        return 0
    unknown = sorted(set(args.section or ()) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"bench: unknown section(s) {unknown}; sections: {list(SECTIONS)}")
    unknown = sorted(set(args.adapter or ()) - set(ADAPTERS))
    if unknown:
        raise ConfigError(f"bench: unknown adapter(s) {unknown}; the end-to-end section measures {list(ADAPTERS)}")
    settings = BenchSettings(quick=args.quick, device=args.device, adapters=tuple(dict.fromkeys(args.adapter or ())))
    print(f"arena-adapters bench{' --quick' if args.quick else ''} on {_machine()['description']}")
    results = run_sections(SECTIONS, settings, args.section)
    print(format_table(results))
    _write(args.json, json.dumps(as_json(results, settings), indent=2) + "\n")
    _write(args.markdown, markdown_tables(results))
    return 0


def _write(destination: str | None, text: str) -> None:
    if destination:
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


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
        "settings": {"quick": settings.quick, "device": settings.device, "adapters": list(settings.adapters)},
        "sections": [
            {"name": r.name, "skipped": r.skipped, "wall_s": r.wall_s, "rows": [row.as_dict() for row in r.rows]}
            for r in results
        ],
    }


COMMAND = Command("bench", "side-by-side benchmarks: ours vs the baselines, one table (and JSON)", add_arguments, run)
