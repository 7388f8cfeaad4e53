"""Bench results as tables: the text table ``arena-adapters bench`` prints, and Markdown tables
(those of ``docs/benchmarks.md``, ``--markdown``).

In Markdown each section gets one table, except where its rows carry more structure:

- ``scheduler``: one row per measurement, one column per size (``ours / baseline (ratio)``);
- ``prefetch``: synchronous and prefetch step times, the speed-up, its ceiling and bound;
- ``end_to_end``: env steps/s per adapter and size beside the local limit, the env alone and the
  Arena-style client (with what bounds that ratio), the runs against several servers, and one
  query's parts;
- any other section (and rows a known section does not recognise): measurement, ours, baseline,
  ratio and the notes of the text table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from arena_adapters.bench.end_to_end import PARTS
from arena_adapters.bench.rows import Row, SectionResult
from arena_adapters.bench.timing import seconds

RATIO_NOTES = (
    ("ceiling", "ceiling"),
    ("bound", "bound"),
    ("limit_vs_arena", "local adapter"),
    ("zero_cost_bound", "a client costing nothing"),
    ("cost_vs_arena", "cost per step beyond the env: Arena-style / ours"),
)
"""Ratios a row's ``extra`` may hold, in the order of its notes, with their labels."""

_SIZED = re.compile(r"^(?P<what>.*), (?P<envs>\d+) envs$")
_E2E_LOCAL = re.compile(r"^(?P<adapter>[\w.-]+), (?P<envs>\d+) envs vs local$")
_E2E_REPLICAS = re.compile(r"^(?P<adapter>[\w.-]+), (?P<envs>\d+) envs, (?P<servers>\d+) replicas vs local$")


def row_notes(extra: dict[str, Any]) -> str:
    """A row's notes: its floor or bandwidth and the ratios of :data:`RATIO_NOTES` it holds."""
    notes = [f"floor {seconds(extra['floor_s'])}"] if "floor_s" in extra else []
    notes += [f"{extra['GB_per_s']:.2f} GB/s"] if "GB_per_s" in extra else []
    notes += [f"{label} {extra[key]:.2f}x" for key, label in RATIO_NOTES if key in extra]
    return ", ".join(notes)


def format_table(results: Sequence[SectionResult]) -> str:
    """One text table of every row (sections skipped are listed with their reason)."""
    header = ("section", "measurement", "ours", "baseline", "ratio", "baseline is / notes")
    lines: list[tuple[str, ...]] = [header]
    for result in results:
        if result.skipped is not None:
            lines.append((result.name, "(skipped)", "", "", "", result.skipped))
        lines += [(row.section, *_cells(row)) for row in result.rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = []
    for line in lines:
        cells = [
            cell.rjust(width) if i >= 2 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=False))
        ]
        text.append("  ".join(cells) + "  " + line[-1])
    return "\n".join(text) + "\nratio = baseline / ours (above 1: ours is faster); times are medians"


def markdown_tables(results: Sequence[SectionResult]) -> str:
    """Markdown of every section with rows: a ``### name`` heading and its table(s); a skipped
    section is one line with its reason."""
    blocks = []
    for result in results:
        if result.skipped is not None:
            blocks.append(f"### {result.name}\n\nskipped: {result.skipped}")
            continue
        if not result.rows:
            continue
        formatter = _FORMATTERS.get(result.name)
        tables, rest = formatter(result.rows) if formatter else ([], list(result.rows))
        if rest:
            tables.append(_generic(rest))
        blocks.append(f"### {result.name}\n\n" + "\n\n".join(tables))
    return "\n\n".join(blocks) + "\n"


def _table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(text)


def _cells(row: Row) -> tuple[str, ...]:
    """A row as the text table and the generic Markdown table write it: measurement, ours,
    baseline, ratio, and what the baseline is with the row's notes."""
    notes = row_notes(dict(row.extra))
    return (row.name, seconds(row.ours_s), seconds(row.baseline_s), f"{row.ratio:.2f}x",
            row.baseline + (f"; {notes}" if notes else ""))


def _generic(rows: Sequence[Row]) -> str:
    return _table(("measurement", "ours", "baseline", "ratio", "baseline is / notes"), [_cells(row) for row in rows])


def _scheduler(rows: Sequence[Row]) -> tuple[list[str], list[Row]]:
    cells: dict[str, dict[int, Row]] = {}
    rest = []
    for row in rows:
        match = _SIZED.match(row.name)
        if match is None:
            rest.append(row)
            continue
        cells.setdefault(match["what"], {})[int(match["envs"])] = row
    sizes = sorted({envs for by_size in cells.values() for envs in by_size})
    if not sizes:
        return [], rest
    header = ["measurement", *(f"{envs} envs: ours / {rows[0].baseline.split(' (')[0]}" if i == 0 else f"{envs} envs"
                               for i, envs in enumerate(sizes))]
    lines = []
    for what, by_size in cells.items():
        lines.append([what, *(f"{seconds(by_size[envs].ours_s)} / {seconds(by_size[envs].baseline_s)} "
                              f"({by_size[envs].ratio:.2f}x)" if envs in by_size else "-" for envs in sizes)])
    return [_table(header, lines)], rest


def _prefetch(rows: Sequence[Row]) -> tuple[list[str], list[Row]]:
    lines, rest = [], []
    for row in rows:
        extra = row.extra
        if "ceiling" not in extra or "bound" not in extra:
            rest.append(row)
            continue
        lines.append((row.name, seconds(row.baseline_s), seconds(row.ours_s), f"{row.ratio:.2f}x",
                      f"{extra['ceiling']:.2f}x", f"{extra['bound']:.2f}x"))
    header = ("measurement", "synchronous", "prefetch", "speed-up", "ceiling", "bound")
    return ([_table(header, lines)] if lines else []), rest


def _end_to_end(rows: Sequence[Row]) -> tuple[list[str], list[Row]]:
    by_name = {row.name: row for row in rows}
    used: set[str] = set()
    summary, replicas, parts = [], [], []
    for row in rows:
        local, replicated = _E2E_LOCAL.match(row.name), _E2E_REPLICAS.match(row.name)
        if not {"env_steps_per_s", "local_env_steps_per_s"} <= row.extra.keys() or not (local or replicated):
            continue
        arena = by_name.get(row.name.replace(" vs local", " vs Arena-style"))
        used.add(row.name)
        if arena is not None:
            used.add(arena.name)
        if local is not None:
            summary.append(_summary_line(local["adapter"], local["envs"], row, arena))
            query = by_name.get(f"{local['adapter']}, {local['envs']} envs, one query")
            if query is not None:
                parts.append(_parts_line(f"{local['adapter']}, {local['envs']} envs", query))
                used.add(query.name)
        elif replicated is not None:
            extra = row.extra
            replicas.append((replicated["adapter"], replicated["envs"], replicated["servers"],
                             f"{extra['env_steps_per_s']:,.0f}", f"{extra['local_env_steps_per_s']:,.0f}",
                             f"{extra['env_steps_per_s'] / extra['local_env_steps_per_s']:.2f}",
                             f"{arena.ratio:.2f}x" if arena else "-",
                             " / ".join(str(n) for n in extra.get("requests_per_replica", ()))))
    tables = []
    if summary:
        tables.append(_table(("adapter", "envs", "ours: env steps/s", "local (limit)", "ours / local", "env alone",
                              "Arena-style", "ours vs Arena-style", "local vs Arena-style",
                              "a zero-cost client vs Arena-style", "cost beyond the env: Arena-style / ours",
                              "requests/step ours / Arena"), summary))
    if replicas:
        tables.append(_table(("adapter", "envs", "servers", "ours: env steps/s", "local (limit)", "ours / local",
                              "ours vs Arena-style", "requests per server"), replicas))
    if parts:
        tables.append(_table(("adapter, envs", "query (wall)", "floor", "MB/query",
                              *(part.replace("_", " ") for part in PARTS), "wire floor"), parts))
    return tables, [row for row in rows if row.name not in used]


def _summary_line(adapter: str, envs: str, local: Row, arena: Row | None) -> tuple[str, ...]:
    extra = local.extra
    ours, limit = float(extra["env_steps_per_s"]), float(extra["local_env_steps_per_s"])
    alone = extra.get("env_alone_env_steps_per_s")
    versus: dict[str, Any] = dict(arena.extra) if arena else {}

    def ratio(key: str) -> str:
        return f"{versus[key]:.2f}x" if key in versus else "-"

    return (adapter, envs, f"{ours:,.0f}", f"{limit:,.0f}", f"{ours / limit:.2f}",
            f"{alone:,.0f}" if alone else "-",
            f"{versus['arena_env_steps_per_s']:,.0f}" if "arena_env_steps_per_s" in versus else "-",
            f"{arena.ratio:.2f}x" if arena else "-", ratio("limit_vs_arena"), ratio("zero_cost_bound"),
            ratio("cost_vs_arena"),
            f"{extra.get('requests_per_step', '-')} / {versus.get('arena_requests_per_step', '-')}")


def _parts_line(name: str, query: Row) -> tuple[str, ...]:
    extra = query.extra
    return (name, seconds(query.ours_s), seconds(query.baseline_s), f"{extra.get('bytes_per_query', 0) / 1e6:.1f}",
            *(seconds(float(extra[f"{part}_s"])) if f"{part}_s" in extra else "-" for part in PARTS),
            seconds(float(extra["wire_floor_s"])) if "wire_floor_s" in extra else "-")


_FORMATTERS: dict[str, Callable[[Sequence[Row]], tuple[list[str], list[Row]]]] = {
    "scheduler": _scheduler,
    "prefetch": _prefetch,
    "end_to_end": _end_to_end,
}
