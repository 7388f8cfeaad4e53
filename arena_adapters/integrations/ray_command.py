"""``arena-adapters eval --ray [ADDRESS]``: the command-line face of :func:`evaluate_on_ray`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arena_adapters.errors import ConfigError
from arena_adapters.integrations.ray_eval import ShardedEvalConfig, ShardResources, evaluate_on_ray
from arena_adapters.integrations.ray_result import ShardedResult

RAY_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for single-machine mode: ``0`` binds its processes to 127.0.0.1."""


def run_on_ray(
    args: argparse.Namespace, adapter_options: Mapping[str, Any], env_options: Mapping[str, Any],
    report: Path | None,
) -> ShardedResult:
    """Run the sharded evaluation the parsed ``eval`` flags describe.

    Raises:
        ConfigError: contradicting flags (``--endpoint`` with ``--serve-replicas``, ``--replica``,
            ``--device cuda`` without GPUs per shard...).
    """
    from arena_adapters.cli.eval_command import progress_display

    if not args.ray and not os.environ.get("RAY_ADDRESS"):
        # A new local instance: keep Ray's own processes on 127.0.0.1, like the reference servers
        # (Ray reads this switch when first imported).
        os.environ.setdefault(RAY_LOOPBACK_ONLY, "0")
    options = dict(adapter_options)
    endpoints = options.pop("endpoint", None)
    if options.pop("replica", None) is not None:
        raise ConfigError("--replica is for torchrun ranks; with --ray, shard i uses replica i mod n of --endpoint")
    serve = args.serve_replicas or 0
    if serve and endpoints is not None:
        raise ConfigError("--serve-replicas starts its own servers: give it or --endpoint, not both")
    device = args.device or "cpu"
    gpus = args.gpus_per_shard if args.gpus_per_shard is not None else (1.0 if device.startswith("cuda") else 0.0)
    if device.startswith("cuda") and gpus <= 0:
        raise ConfigError(f"--device {device} needs --gpus-per-shard > 0 (each shard gets its own GPUs from Ray)")
    for flag in ("shards", "serve_replicas", "max_shard_restarts"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag != "shards" else 1):
            raise ConfigError(f"--{flag.replace('_', '-')}: expected >= {0 if flag != 'shards' else 1}, got {value}")
    config = ShardedEvalConfig(
        adapter=args.adapter,
        adapter_options=options,
        environment=args.env,
        env_options=dict(env_options),
        num_envs=args.num_envs,
        device="cuda" if device.startswith("cuda") else device,
        max_steps=args.max_steps,
        threads=args.threads or 1,
    )
    resources = ShardResources(
        cpus_per_shard=args.cpus_per_shard if args.cpus_per_shard is not None else 1.0,
        gpus_per_shard=gpus,
    )
    return evaluate_on_ray(
        config,
        args.num_episodes,
        endpoints=endpoints,
        num_shards=args.shards,
        serve_replicas=serve,
        address=args.ray or None,
        resources=resources,
        on_shard_error=args.on_shard_error or "retry",
        max_shard_restarts=args.max_shard_restarts if args.max_shard_restarts is not None else 3,
        progress=progress_display(args.progress, f"{args.env}/{args.adapter} on Ray"),
        report_path=report,
        figure=not args.no_figure,
    )
