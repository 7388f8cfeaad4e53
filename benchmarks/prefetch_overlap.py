"""Eval steps/s with asynchronous prefetch vs synchronous queries: ``arena-adapters bench --section prefetch``.

    python benchmarks/prefetch_overlap.py [--quick] [--json PATH]

The measuring code and the scenario (reach env, 64 envs, 60 ms inference, 20 ms physics per step,
episodes in phase and out of phase) are in :mod:`arena_adapters.bench.prefetch`.
"""

from __future__ import annotations

import sys

from arena_adapters.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--section", "prefetch", *sys.argv[1:]]))
