"""Sharded evaluation on Ray vs one process: env steps/s and episodes/s for K shards x R replicas.

    .venv/bin/python benchmarks/ray_shards.py [--shards 1,2] [--replicas 1,2] [--num-envs 16]
        [--num-episodes 96] [--device cpu|cuda] [--adapter gr00t] [--address ADDRESS]

The policy is the ``reach`` expert behind R reference servers of ``--adapter`` (processes on this
machine, started once, used by every row). The baseline is the plain runner in this process
(:func:`arena_adapters.evaluation.evaluate`, one env of ``--num-envs`` envs, replica 0). Each sharded
row is :func:`~arena_adapters.integrations.ray_eval.evaluate_on_ray` with K shards of ``--num-envs``
envs each (one GPU per shard with ``--device cuda``), shard i on replica i mod R, for the same
``--num-episodes``.

Two rates per row: over the evaluation span (first shard starting its episodes to the last result:
what a long study converges to) and over the whole call (start-up of the Ray actors included: what a
short run costs). The speed-up is against the baseline's rate in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

import arena_adapters as aa
from arena_adapters.envs import make_environment
from arena_adapters.envs.expert_server import served_expert
from arena_adapters.evaluation import evaluate
from arena_adapters.evaluation.demo import FIRST_PARTY_ADAPTERS
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.integrations.ray_actors import import_ray
from arena_adapters.integrations.ray_eval import ShardedEvalConfig, ShardResources, evaluate_on_ray


@dataclass(frozen=True)
class Row:
    label: str
    shards: int
    replicas: int
    episodes: int
    wall_s: float
    span_s: float
    env_steps: int

    def rate(self, count: float, whole: bool) -> float:
        seconds = self.wall_s if whole else self.span_s
        return count / seconds if seconds > 0 else 0.0


def baseline(args: argparse.Namespace, endpoint: str, env_options: dict[str, object]) -> Row:
    device = "cuda:0" if args.device == "cuda" else "cpu"
    env = make_environment("reach", num_envs=args.num_envs, device=device, **env_options)
    options = dict(served_expert(args.adapter).client_options)
    began = time.perf_counter()
    try:
        with aa.load_policy(args.adapter, endpoint=endpoint, num_envs=args.num_envs, device=device,
                            **options) as policy:
            result = evaluate(policy, env, args.num_episodes, figure=False)
    finally:
        env.close()
    wall = time.perf_counter() - began
    return Row("one process", 0, 1, result.completed, wall, result.wall_time_s, result.steps * args.num_envs)


def sharded(args: argparse.Namespace, endpoints: list[str], shards: int, env_options: dict[str, object]) -> Row:
    config = ShardedEvalConfig(args.adapter, adapter_options=dict(served_expert(args.adapter).client_options),
                               env_options=env_options, num_envs=args.num_envs, device=args.device,
                               threads=args.threads)
    resources = ShardResources(cpus_per_shard=args.cpus_per_shard, gpus_per_shard=1.0 if args.device == "cuda" else 0)
    began = time.perf_counter()
    result = evaluate_on_ray(config, args.num_episodes, endpoints=endpoints, num_shards=shards,
                             resources=resources, figure=False)
    wall = time.perf_counter() - began
    assert result.completed == args.num_episodes and sorted(e.index for e in result.episodes) == list(
        range(args.num_episodes)), "every episode exactly once"
    return Row(f"{shards} shard(s)", shards, len(endpoints), result.completed, wall, result.span_s, result.env_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="1,2", help="shard counts, comma-separated (default 1,2)")
    parser.add_argument("--replicas", default="1,2", help="replica counts, comma-separated (default 1,2)")
    parser.add_argument("--num-envs", type=int, default=16, help="envs per shard (default 16)")
    parser.add_argument("--num-episodes", type=int, default=96, help="episodes per row (default 96)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: one GPU per shard")
    parser.add_argument("--adapter", default="gr00t",
                        choices=FIRST_PARTY_ADAPTERS)
    parser.add_argument("--address", default=None, help="Ray address (default: a new local instance)")
    parser.add_argument("--cpus-per-shard", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--image-size", default="180x320", help="camera HxW of the reach env (default 180x320)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.image_size.split("x"))
    env_options: dict[str, object] = {"image_height": height, "image_width": width}
    shard_counts = [int(v) for v in args.shards.split(",")]
    replica_counts = [int(v) for v in args.replicas.split(",")]

    servers = [ServerProcess.for_expert(args.adapter) for _ in range(max(replica_counts))]
    if not args.address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local instance on 127.0.0.1 only
    ray = import_ray()
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            endpoints = list(pool.map(ServerProcess.start, servers))
        base = baseline(args, endpoints[0], env_options)
        if args.address:
            ray.init(address=args.address)
        else:
            gpus = torch.cuda.device_count() if args.device == "cuda" else 0
            ray.init(num_cpus=max(shard_counts) * args.cpus_per_shard, num_gpus=gpus, include_dashboard=False,
                     log_to_driver=False)
        rows = [sharded(args, endpoints[:replicas], shards, env_options)
                for replicas in replica_counts for shards in shard_counts]
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for server in servers:
            server.stop()

    print(f"reach x {args.adapter} reference servers: {args.num_episodes} episodes, {args.num_envs} envs per "
          f"process/shard, device {args.device}, images {args.image_size}")
    print(f"{'run':<14}{'replicas':>9}{'span s':>8}{'env steps/s':>13}{'episodes/s':>12}{'speed-up':>10}"
          f"{'wall s':>8}{'episodes/s':>12}{'speed-up':>10}")
    print(f"{'':<23}{'|-- evaluation span, start-up excluded --|':>43}{'|-- whole call, start-up in --|':>31}")
    base_span = base.rate(base.episodes, whole=False)
    base_wall = base.rate(base.episodes, whole=True)
    for row in [base, *rows]:
        span_rate, wall_rate = row.rate(row.episodes, whole=False), row.rate(row.episodes, whole=True)
        print(f"{row.label:<14}{row.replicas:>9}{row.span_s:>8.2f}{row.rate(row.env_steps, whole=False):>13.0f}"
              f"{span_rate:>12.2f}{span_rate / base_span:>9.2f}x{row.wall_s:>8.2f}{wall_rate:>12.2f}"
              f"{wall_rate / base_wall:>9.2f}x")


if __name__ == "__main__":
    main()
