"""``arena-adapters ping NAME --endpoint ...``: health, metadata, one synthetic inference, latencies."""

from __future__ import annotations

import argparse

from arena_adapters.cli.command import Command, parse_option_flags
from arena_adapters.errors import ConfigError
from arena_adapters.options import resolve_options
from arena_adapters.parts import ProbeReport
from arena_adapters.plugins import default_registry
from arena_adapters.records import ProbeRecord

_FIXED = ("endpoint", "timeout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="adapter name whose probe to run")
    parser.add_argument("--endpoint", required=True, help="server address, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per step (default 10)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    registry = default_registry()
    adapter = registry.adapter(args.name)
    if not adapter.probe:
        raise ConfigError(f"adapter {adapter.name!r} has no probe")
    record = registry.part(ProbeRecord, adapter.probe)
    owner = f"ping {adapter.name}"
    given = parse_option_flags(extra, record.options, owner, skip=_FIXED)
    options = resolve_options([o for o in record.options if o.name not in _FIXED], given, owner)
    report: ProbeReport = record.factory(endpoint=args.endpoint, timeout=args.timeout, **options)
    print(format_report(report))
    return 0 if report.ok else 1


def format_report(report: ProbeReport) -> str:
    """One line per step, then OK or the one-line reason."""
    lines = [f"probe {report.endpoint}"]
    for step in report.steps:
        mark = "ok  " if step.ok else "FAIL"
        lines.append(f"  {mark} {step.name:<24} {step.latency_s * 1e3:9.2f} ms  {step.detail}")
    lines.append("OK" if report.ok else f"FAILED: {report.failure}")
    return "\n".join(lines)


COMMAND = Command("ping", "probe a live policy server end to end", add_arguments, run, takes_extra=True)
