"""The Ray actors of a sharded evaluation: a shard (runs its episodes, streams results) and a
reference server. Plain classes: :mod:`arena_adapters.integrations.ray_eval` makes them actors with
``ray.remote`` when it runs, so importing this module needs no Ray."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.progress import EvalProgress
from arena_adapters.integrations.ray_shards import ShardAssignment

if TYPE_CHECKING:
    from arena_adapters.integrations.ray_eval import ShardedEvalConfig

RAY_MISSING = "Ray is not installed; install it with: pip install 'arena-adapters[ray]'"


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc
    return ray



class ShardWorker:
    """One shard: runs its episodes with the ordinary runner, streaming results to the collector.

    Used as a Ray actor (``ray.remote(ShardWorker)``); holds nothing between calls, so a restarted
    actor is as good as the first.
    """

    def run(self, config: ShardedEvalConfig, assignment: ShardAssignment, num_shards: int, collector: Any) -> int:
        """Run the ids of ``assignment`` that the collector does not have yet; return the attempt number."""
        import torch

        from arena_adapters.envs import environment_options, make_environment
        from arena_adapters.evaluation.policy_stats import plain_stats
        from arena_adapters.evaluation.runner import evaluate
        from arena_adapters.policy import load_policy

        ray = import_ray()
        attempt, remaining = ray.get(collector.begin.remote(assignment.index, config.num_envs))
        if not remaining:
            return int(attempt)
        torch.set_num_threads(config.threads)
        device = shard_device(config.device, ray.get_gpu_ids())
        env_options = dict(config.env_options)
        seed_option = next((o for o in environment_options(config.environment) if o.name == "seed"), None)
        seed = env_options.get("seed", seed_option.default if seed_option else None)
        if seed_option is not None and seed is not None:
            env_options["seed"] = int(seed) + assignment.index + num_shards * attempt
        options = dict(config.adapter_options)
        if assignment.endpoint is not None:
            options["endpoint"] = assignment.endpoint
        env = make_environment(config.environment, num_envs=config.num_envs, device=device, **env_options)
        try:
            with load_policy(config.adapter, num_envs=config.num_envs, device=device, **options) as policy:
                streamer = ShardStreamer(collector, assignment.index, attempt, remaining, policy.stats,
                                         config.num_envs, config.report_interval_s)
                try:
                    evaluate(policy, env, len(remaining), callbacks=[streamer], figure=False,
                             max_steps=config.max_steps)
                finally:  # what finished is kept, also when the run fails
                    ray.get(streamer.flush())
                report = {"device": device, "node": ray.util.get_node_ip_address(), "pid": os.getpid(),
                          "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()], "endpoint": options.get("endpoint"),
                          "env_options": {key: str(value) for key, value in env_options.items()},
                          "policy_stats": plain_stats(policy.stats)}
                ray.get(collector.finish.remote(assignment.index, attempt, report))
        finally:
            env.close()
        return int(attempt)


class ShardStreamer:
    """An :func:`~arena_adapters.evaluation.evaluate` callback in a shard: sends finished episodes
    (with their global ids), new latency samples and counter increments to the collector, at most
    every ``interval_s`` (and at the last episode)."""

    def __init__(self, collector: Any, shard: int, attempt: int, episode_ids: Sequence[int], stats: Any,
                 num_envs: int, interval_s: float) -> None:
        self.collector = collector
        self.shard = shard
        self.attempt = attempt
        self.episode_ids = list(episode_ids)
        self.stats = stats
        self.num_envs = num_envs
        self.interval_s = interval_s
        self._rows: list[tuple[int, int, int, bool, int]] = []
        self._started = 0
        self._sent = {"latencies": stats.latency_count, "queries": stats.queries,
                      "env_requests": stats.env_requests, "steps": 0}
        self._step = 0
        self._last = time.monotonic()

    def __call__(self, progress: EvalProgress) -> None:
        for episode in progress.new_episodes:
            self._rows.append((self.episode_ids[episode.index], episode.env_id, episode.length,
                               episode.success, episode.end_step))
        self._step = progress.step
        self._started = progress.finished + progress.in_flight
        now = time.monotonic()
        if now - self._last >= self.interval_s or progress.finished >= progress.num_episodes:
            self.flush()

    def flush(self) -> Any:
        """Send what is new; returns the Ray reference of the call."""
        self._last = time.monotonic()
        latencies = self.stats.latencies_since(self._sent["latencies"])
        counts = {"queries": self.stats.queries, "env_requests": self.stats.env_requests, "steps": self._step}
        steps = counts["steps"] - self._sent["steps"]
        reference = self.collector.record.remote(
            self.shard, self.attempt, self._rows, started=self._started, latencies_s=latencies,
            queries=counts["queries"] - self._sent["queries"],
            env_requests=counts["env_requests"] - self._sent["env_requests"],
            steps=steps, env_steps=steps * self.num_envs,
        )
        self._rows = []
        self._sent["latencies"] = self.stats.latency_count
        self._sent.update(counts)
        return reference


class ReferenceServer:
    """A plugin's reference server serving the ``reach`` expert, as a Ray actor (``--serve-replicas``).

    Args:
        adapter: whose reference server.
        host: where it listens; ``0.0.0.0`` advertises the node's address (for multi-node clusters).
    """

    def __init__(self, adapter: str, host: str = "127.0.0.1", threads: int = 1) -> None:
        import torch

        from arena_adapters.envs.expert_server import start_expert_server

        torch.set_num_threads(threads)
        self.server = start_expert_server(adapter, host, 0)
        endpoint = str(self.server.endpoint)
        if host in ("0.0.0.0", "::"):
            endpoint = endpoint.replace(host, import_ray().util.get_node_ip_address(), 1)
        self._endpoint = endpoint

    def endpoint(self) -> str:
        """The address clients connect to."""
        return self._endpoint

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()


def shard_device(device: str, gpu_ids: Sequence[Any]) -> str:
    """The env device inside a shard: ``cuda`` means the shard's first GPU (Ray narrows
    ``CUDA_VISIBLE_DEVICES`` to its GPUs, so that is ``cuda:0``); anything else is kept."""
    if device == "cuda":
        if not gpu_ids:
            raise ConfigError("device 'cuda' for a shard without GPUs: give gpus_per_shard (--gpus-per-shard) > 0")
        return "cuda:0"
    return device
