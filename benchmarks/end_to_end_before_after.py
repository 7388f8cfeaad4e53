"""The end-to-end breakdown at one size with the code of two checkouts, interleaved in one run.

    python benchmarks/end_to_end_before_after.py BEFORE_CHECKOUT [AFTER_CHECKOUT] [--envs 1024]

Each checkout needs its own ``.venv`` (``bash scripts/bootstrap.sh`` in it); AFTER defaults to this
one. For each adapter the two sides run before, after, after, before, each in a process of its own
with its checkout's own ``arena_adapters.bench.end_to_end`` (``_drive_ours`` and ``_breakdown``
against a reference server process serving the null policy, 4 warm-up and 16 measured steps), and
a table of every run is printed with the after/before ratio of the mean env steps/s. Works with
the end-to-end bench as it first landed (``_server``) and as it is now (``_servers``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

SIDE = """
import json, sys, torch
from arena_adapters.bench import end_to_end as e
adapter, n = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
plan = e.Plan(sizes=(n,), warmup=4, huge_steps=16)
new = hasattr(e, "_servers")
with (e._servers(adapter, False) if new else e._server(adapter, False)) as served:
    endpoint, record = (served[0][0], served[1]) if new else served
    options = {**dict(record.client_options), "timeout": 300.0}
    if new:
        timers = e.Timers()
        run, queries = e._drive_ours(adapter, endpoint, options, n, plan, "cpu", timers)
    else:
        run, timers, queries = e._drive_ours(adapter, endpoint, options, n, plan)
    parts = e._breakdown(adapter, record, timers, max(queries, 1))
    print(json.dumps({"env_steps_per_s": run.env_steps_per_s,
                      "query_s": timers.seconds["get_action"] / max(queries, 1), **parts}))
"""
PARTS = ("obs_translation", "encode", "transfer", "server_decode", "client_decode")


def run_side(checkout: Path, adapter: str, num_envs: int) -> dict[str, float]:
    done = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", SIDE, adapter, str(num_envs)],
                          cwd=checkout, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--envs", type=int, default=1024)
    parser.add_argument("--adapters", default="gr00t,openpi,openvla")
    args = parser.parse_args()
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    print(f"| adapter, {args.envs} envs | code | env steps/s | query (wall) | "
          + " | ".join(part.replace("_", " ") for part in PARTS) + " |")
    print("|---|---|---|---|" + "---|" * len(PARTS))
    for adapter in args.adapters.split(","):
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for side in ("before", "after", "after", "before"):
            runs[side].append(run_side(sides[side], adapter, args.envs))
        for side in ("before", "after"):
            for result in runs[side]:
                cells = " | ".join(f"{result[part] * 1e3:.1f} ms" for part in PARTS)
                print(f"| {adapter} | {side} | {result['env_steps_per_s']:,.0f} | {result['query_s'] * 1e3:.1f} ms "
                      f"| {cells} |")
        mean = {side: sum(r["env_steps_per_s"] for r in runs[side]) / len(runs[side]) for side in runs}
        print(f"| {adapter} | after / before | {mean['after'] / mean['before']:.2f}x | | " + "| " * len(PARTS))


if __name__ == "__main__":
    main()
