"""Scheduler step time vs Isaac Lab Arena's chunking: ``arena-adapters bench --section scheduler``.

    python benchmarks/scheduler_step.py [--quick] [--device cuda] [--sync-check]

The measuring code is :mod:`arena_adapters.bench.scheduler`; ``--sync-check`` (CUDA) also proves
that replay steps never synchronise the device.
"""

from __future__ import annotations

import sys

import torch

from arena_adapters.bench.scheduler import sync_check
from arena_adapters.cli import main

if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg != "--sync-check"]
    code = main(["bench", "--section", "scheduler", *args])
    if "--sync-check" in sys.argv[1:] and torch.cuda.is_available():
        print(sync_check(torch.device("cuda")))
    sys.exit(code)
