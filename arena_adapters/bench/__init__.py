"""Side-by-side benchmarks: each section measures ours against a baseline in the same run.

``arena-adapters bench`` runs every section in :data:`SECTIONS` and prints one table. A section is
one function ``run(settings: BenchSettings) -> list[Row]`` in some module; adding one is writing
that function and adding one line to :data:`SECTIONS`::

    SECTIONS = {
        ...,
        "end_to_end": "arena_adapters.bench.end_to_end:run",
    }

A section that needs something not installed (a plugin, a peer library) raises
:class:`SectionSkipped` with the reason; the command reports it and goes on.
"""

from __future__ import annotations

from arena_adapters.bench.rows import BenchSettings, Row, SectionSkipped, load_section, run_sections

SECTIONS: dict[str, str] = {
    "scheduler": "arena_adapters.bench.scheduler:run",
    "prefetch": "arena_adapters.bench.prefetch:run",
    "codecs": "arena_adapters.bench.codecs:run",
    "end_to_end": "arena_adapters.bench.end_to_end:run",
}
"""Section name -> ``"module:function"``, in the order they run."""

__all__ = ["SECTIONS", "BenchSettings", "Row", "SectionSkipped", "load_section", "run_sections"]
