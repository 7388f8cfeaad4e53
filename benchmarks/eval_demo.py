"""Wall time of ``arena-adapters demo`` per adapter, as a user runs it (a fresh process each time).

    .venv/bin/python benchmarks/eval_demo.py [--adapters gr00t,openpi,openvla] [--repeats 3] [-- DEMO FLAGS]

Each run is the full command: interpreter start, imports, the reference server process starting,
the demo's default size (16 envs x 32 episodes of the moving-target ``reach`` task), the report and
figure, the server stopped. Prints the median wall time, the evaluation's own time, latency
percentiles, success and episode length, and the env observations sent next to the ideal and an
Arena-style client (counted by the demo's shadow schedules; see
:mod:`arena_adapters.evaluation.request_counts`). Flags after ``--`` go to ``arena-adapters demo``
(e.g. ``-- --execute-steps 32`` or ``-- --policy null``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(adapter: str, extra: list[str]) -> tuple[float, dict[str, object]]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "demo.json"
        command = [sys.executable, "-m", "arena_adapters", "demo", "--adapter", adapter, "--progress", "none",
                   "--report", str(report), *extra]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - started
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr}")
        return wall, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", default="gr00t,openpi,openvla")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-figure", action="store_true", help="pass --no-figure to the demo")
    parser.add_argument("demo_flags", nargs="*", help="flags for arena-adapters demo (after --)")
    args = parser.parse_args()
    extra = (["--no-figure"] if args.no_figure else []) + list(args.demo_flags)
    print("arena-adapters demo", " ".join(extra), "; median of", args.repeats, "runs")
    print(f"{'adapter':>8} {'wall s':>7} {'eval s':>7} {'server start s':>15} {'success':>8} {'mean len':>8} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'requests':>9} {'env obs: sent':>14} {'ideal':>6} "
          f"{'Arena-style':>12}")
    for adapter in args.adapters.split(","):
        runs = [run_once(adapter, extra) for _ in range(args.repeats)]
        wall = statistics.median(run[0] for run in runs)
        report = sorted(runs, key=lambda run: run[0])[len(runs) // 2][1]
        latency = report["latency_ms"]
        assert isinstance(latency, dict)
        requests = report["requests"]
        assert isinstance(requests, dict)
        compared = requests.get("compared") or {}
        sent, ideal, arena = (compared.get(key, {}).get("env_observations", "-")
                              for key in ("sent", "ideal", "arena_style"))
        lengths = report["episode_length"]
        assert isinstance(lengths, dict)
        print(f"{adapter:>8} {wall:>7.2f} {report['wall_time_s']:>7.2f} {report.get('server_start_s', 0):>15.2f} "
              f"{report['success_rate']:>8.3f} {lengths['mean']:>8.1f} {latency['p50']:>7.2f} {latency['p95']:>7.2f} "
              f"{latency['p99']:>7.2f} {requests['count']:>9} {sent:>14} {ideal:>6} {arena:>12}")


if __name__ == "__main__":
    main()
