"""Scale-out over GPUs with torchrun: env steps/s and episodes/s for K ranks (one GPU each) x R replicas.

    python benchmarks/torchrun_shards.py [--shards 1,2,4] [--replicas 1,4] [--num-envs 256]
        [--num-episodes 1024] [--device cuda] [--adapter gr00t]

For every row, R reference servers of ``--adapter`` serve the ``reach`` expert (processes on this
machine), and ``torchrun --nproc-per-node K -m arena_adapters eval`` runs K ranks: rank r on
``cuda:r`` with its own env of ``--num-envs`` envs and its share of the ``--num-episodes`` episodes,
on replica ``r mod R`` (the rank defaults of :mod:`arena_adapters.distributed`). The rates are the
ranks' env steps and episodes over the slowest rank's evaluation time, and over the whole torchrun
call (process start-up included); the speed-up is against the 1-rank, 1-replica row of the same run.
The same scale-out on Ray (shards as actors) is ``benchmarks/ray_shards.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from arena_adapters.envs.expert_server import served_expert
from arena_adapters.evaluation.server_process import ServerProcess


def run_row(args: argparse.Namespace, shards: int, endpoints: list[str], folder: Path) -> dict[str, float]:
    report = folder / f"k{shards}-r{len(endpoints)}.json"
    options = served_expert(args.adapter).client_options
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={shards}",
               "-m", "arena_adapters", "eval", "--adapter", args.adapter, "--endpoint", ",".join(endpoints),
               "--replica", "rank", "--env", "reach", "--num-envs", str(args.num_envs),
               "--num-episodes", str(args.num_episodes), "--progress", "none", "--no-figure",
               "--report", str(report), *([f"--device={args.device}"] if args.device == "cpu" else []), *flags]
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "2"})
    whole = time.perf_counter() - began
    reports = [json.loads(path.read_text()) for path in sorted(folder.glob(f"{report.stem}.rank*.json"))]
    if not reports:
        reports = [json.loads(report.read_text())]
    span = max(r["wall_time_s"] for r in reports)
    env_steps = sum(r["steps"]["count"] * r["num_envs"] for r in reports)
    episodes = sum(r["completed_episodes"] for r in reports)
    return {"shards": shards, "replicas": len(endpoints), "episodes": episodes, "env_steps": env_steps,
            "span_s": span, "whole_s": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--replicas", default="1,4")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--num-episodes", type=int, default=1024)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--adapter", default="gr00t")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shard_counts = [int(k) for k in args.shards.split(",")]
    replica_counts = [int(r) for r in args.replicas.split(",")]
    rows = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        servers = [stack.enter_context(ServerProcess.for_expert(args.adapter)) for _ in range(max(replica_counts))]
        for replicas in replica_counts:
            for shards in shard_counts:
                rows.append(run_row(args, shards, [s.endpoint for s in servers[:replicas]], Path(folder)))
    base = rows[0]
    print(f"{args.adapter}, reach env of {args.num_envs} envs per rank on {args.device}, "
          f"{args.num_episodes} episodes per row")
    print("ranks  replicas  episodes  env steps/s  episodes/s  speed-up  (whole call: env steps/s, speed-up)")
    for row in rows:
        rate = row["env_steps"] / row["span_s"]
        whole = row["env_steps"] / row["whole_s"]
        print(f"{row['shards']:>5}  {row['replicas']:>8}  {row['episodes']:>8}  {rate:>11,.0f}  "
              f"{row['episodes'] / row['span_s']:>10.1f}  {rate / (base['env_steps'] / base['span_s']):>7.2f}x  "
              f"({whole:,.0f}, {whole / (base['env_steps'] / base['whole_s']):.2f}x)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
