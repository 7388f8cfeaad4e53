"""Sharded evaluation on Ray: ``M`` episodes over ``K`` shard actors, merged into one report.

Python API::

    from arena_adapters.integrations.ray_eval import ShardedEvalConfig, evaluate_on_ray

    config = ShardedEvalConfig("gr00t", adapter_options={"execute_steps": 8}, num_envs=16)
    result = evaluate_on_ray(config, 1000, endpoints="tcp://a:5555,tcp://b:5555", num_shards=4,
                             address="auto", progress=True, report_path="study.json")
    print(result.summary())

The shell: ``arena-adapters eval --adapter gr00t --endpoint tcp://a:5555,tcp://b:5555 --ray auto
--shards 4 --gpus-per-shard 1 --device cuda --num-episodes 1000``; ``--serve-replicas N`` instead of
``--endpoint`` also starts N reference servers (serving the ``reach`` expert) as Ray actors.

How it works:

- Shard ``i`` owns a fixed contiguous block of the global episode ids and runs it with the ordinary
  runner (:func:`~arena_adapters.evaluation.evaluate`) in its own actor: its own env, its own policy,
  connected to replica ``i mod len(endpoints)``.
- Each shard streams its finished episodes, latencies and counters to one collector actor (the
  driver's ledger, :class:`~arena_adapters.integrations.ray_shards.EpisodeCollector`) while it runs;
  the driver polls it for the progress of the whole run.
- A shard whose actor dies is restarted by Ray (``max_restarts``/``max_task_retries``); the retried
  call asks the collector which of its ids are still missing and runs only those. A shard whose run
  raises is run again the same way. Results are kept per id, first one wins: nothing is lost or
  counted twice, and the report lists the episodes that were re-run. ``on_shard_error="stop"``
  stops the whole run at the first failure instead (partial report, then :class:`ShardError`).

Ray is imported only when a function here runs; ``pip install 'arena-adapters[ray]'`` installs it.
Arguments and results cross process boundaries as plain values (str, numbers, lists, dicts).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arena_adapters.distributed import split_endpoints
from arena_adapters.errors import AdapterError, ConfigError
from arena_adapters.evaluation.progress import EvalProgress, ProgressDisplay
from arena_adapters.evaluation.runner import write_outputs
from arena_adapters.integrations.ray_actors import ReferenceServer, ShardWorker, import_ray
from arena_adapters.integrations.ray_result import ShardedResult
from arena_adapters.integrations.ray_shards import EpisodeCollector, ShardAssignment, assign_shards
from arena_adapters.options import masked

ON_SHARD_ERROR = ("retry", "stop")


class ShardError(AdapterError):
    """A shard failed and the run was stopped (``on_shard_error="stop"``, or no retries left)."""


@dataclass(frozen=True)
class ShardedEvalConfig:
    """What every shard runs (plain values only: it is sent to the shard actors).

    Attributes:
        adapter: the adapter name.
        adapter_options: its options (``endpoint`` is set per shard).
        environment: the environment name.
        env_options: its options. A ``seed`` (the env's default if it has one) becomes
            ``seed + shard + num_shards * attempt``, so shards and retries draw different episodes.
        num_envs: envs per shard.
        device: env device; ``cuda`` means the shard's first GPU (Ray assigns them).
        max_steps: stop each shard after this many env steps.
        threads: torch CPU threads per shard.
        report_interval_s: how often a shard streams finished episodes to the driver (at most).
    """

    adapter: str
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    environment: str = "reach"
    env_options: Mapping[str, Any] = field(default_factory=dict)
    num_envs: int = 16
    device: str = "cpu"
    max_steps: int | None = None
    threads: int = 1
    report_interval_s: float = 0.25


@dataclass(frozen=True)
class ShardResources:
    """Ray resources of each shard and each served replica (``--serve-replicas``).

    Attributes:
        cpus_per_shard, gpus_per_shard: per shard actor.
        cpus_per_server, gpus_per_server: per reference-server actor.
    """

    cpus_per_shard: float = 1.0
    gpus_per_shard: float = 0.0
    cpus_per_server: float = 0.0
    gpus_per_server: float = 0.0


@dataclass(frozen=True)
class ShardedProgress:
    """What progress callbacks of :func:`evaluate_on_ray` receive, every poll.

    Attributes:
        overall: the whole run as one :class:`~arena_adapters.evaluation.EvalProgress` (steps of
            all shards summed).
        per_shard_finished: finished episodes per shard.
        per_shard_attempts: attempts per shard so far (1 until a shard is restarted).
        actor_names: the shard actors' Ray names (``ray.get_actor(name)``).
    """

    overall: EvalProgress
    per_shard_finished: tuple[int, ...]
    per_shard_attempts: tuple[int, ...]
    actor_names: tuple[str, ...]


ShardedProgressCallback = Callable[[ShardedProgress], None]


# ------------------------------------------------------------------------------------ driver


def evaluate_on_ray(
    config: ShardedEvalConfig,
    num_episodes: int,
    *,
    endpoints: str | Sequence[str] | None = None,
    num_shards: int | None = None,
    serve_replicas: int = 0,
    serve_host: str = "127.0.0.1",
    address: str | None = None,
    resources: ShardResources | None = None,
    on_shard_error: str = "retry",
    max_shard_restarts: int = 3,
    progress: ProgressDisplay | bool | None = None,
    callbacks: Sequence[ShardedProgressCallback] = (),
    report_path: str | os.PathLike[str] | None = None,
    figure: bool = True,
    info: Mapping[str, Any] | None = None,
    poll_interval_s: float = 0.2,
) -> ShardedResult:
    """Evaluate ``num_episodes`` episodes split over ``num_shards`` Ray actors; one merged result.

    Args:
        config: what each shard runs (adapter, env, envs per shard, device).
        num_episodes: episodes in the report, exactly (ids ``0..num_episodes-1``).
        endpoints: policy server replicas (a list or comma-separated); shard ``i`` uses
            ``endpoints[i % n]``. ``None`` with ``serve_replicas``: the served ones.
        num_shards: shard actors (default: one per replica, at least 1).
        serve_replicas: start this many reference servers of ``config.adapter`` (serving the
            ``reach`` expert) as Ray actors, stopped at the end.
        serve_host: where served replicas listen (``0.0.0.0`` for a multi-node cluster).
        address: the Ray cluster: ``None`` starts a local instance (or joins ``RAY_ADDRESS``),
            ``"auto"`` joins the running one, ``"ray://host:10001"`` connects a client. An
            already initialized Ray is used as it is (and not shut down).
        resources: CPUs/GPUs per shard and per served replica.
        on_shard_error: ``"retry"``: a shard whose actor dies is restarted by Ray, one whose run
            raises is run again, each up to ``max_shard_restarts`` times, re-running only its
            unfinished episodes; ``"stop"``: stop everything at the first failure.
        progress: a display of the whole run (``True``: one on stderr).
        callbacks: called every poll with a :class:`ShardedProgress`; ``KeyboardInterrupt`` from one
            stops the run cleanly.
        report_path, figure, info: as for :func:`~arena_adapters.evaluation.evaluate`.
        poll_interval_s: how often the driver polls the collector for progress.

    Returns:
        The merged :class:`~arena_adapters.integrations.ray_result.ShardedResult`; on Ctrl-C the
        partial one with ``interrupted=True``.

    Raises:
        ConfigError: bad arguments, or Ray is not installed.
        ShardError: a shard failed with ``on_shard_error="stop"`` or out of retries (the partial
            report is written first).
    """
    if on_shard_error not in ON_SHARD_ERROR:
        raise ConfigError(f"on_shard_error: expected one of {', '.join(ON_SHARD_ERROR)}, got {on_shard_error!r}")
    if max_shard_restarts < 0:
        raise ConfigError(f"max_shard_restarts: expected >= 0, got {max_shard_restarts}")
    if serve_replicas < 0:
        raise ConfigError(f"serve_replicas: expected >= 0, got {serve_replicas}")
    given = split_endpoints(endpoints) if endpoints is not None else []
    if given and serve_replicas:
        raise ConfigError("give endpoints or serve_replicas, not both")
    resources = resources or ShardResources()
    shards = num_shards if num_shards is not None else max(1, serve_replicas or len(given))
    assign_shards(num_episodes, shards)  # bad sizes fail before Ray starts
    ray = import_ray()
    started_ray = _connect(ray, address)
    run = _ShardedRun(ray, config, resources, on_shard_error, max_shard_restarts)
    try:
        servers = run.serve(serve_replicas, serve_host) if serve_replicas else given
        assignments = assign_shards(num_episodes, shards, servers)
        display = ProgressDisplay(label=f"{config.environment}/{config.adapter} x{shards}") if progress is True \
            else (progress or None)
        result = run.execute(assignments, num_episodes, display, callbacks, poll_interval_s, dict(info or {}))
    finally:
        run.cleanup()
        if started_ray:
            ray.shutdown()
    if report_path is not None:
        write_outputs(result, report_path, figure)
    if result.error is not None and not result.interrupted:
        raise ShardError(result.error)
    return result


def _connect(ray: Any, address: str | None) -> bool:
    """Initialize Ray unless it is; True when this call started it (so it shuts it down)."""
    if ray.is_initialized():
        return False
    if address and address.startswith("ray://"):
        ray.init(address=address)  # a Ray Client: the cluster's own settings apply
    else:
        ray.init(address=address or None, include_dashboard=False)
    return True


class _ShardedRun:
    """The driver's side of one run: actors up, calls out, progress polled, failures handled."""

    def __init__(self, ray: Any, config: ShardedEvalConfig, resources: ShardResources, on_shard_error: str,
                 max_restarts: int) -> None:
        self.ray = ray
        self.config = config
        self.resources = resources
        self.on_shard_error = on_shard_error
        self.max_restarts = max_restarts if on_shard_error == "retry" else 0
        self.run_id = uuid.uuid4().hex[:8]
        self.servers: list[Any] = []
        self.actors: list[Any] = []
        self.collector: Any = None

    def serve(self, replicas: int, host: str) -> list[str]:
        remote = self.ray.remote(ReferenceServer).options(
            num_cpus=self.resources.cpus_per_server, num_gpus=self.resources.gpus_per_server)
        self.servers = [remote.remote(self.config.adapter, host) for _ in range(replicas)]
        return [str(endpoint) for endpoint in self.ray.get([server.endpoint.remote() for server in self.servers])]

    def actor_name(self, shard: int) -> str:
        return f"arena-adapters-{self.run_id}-shard-{shard}"

    def execute(self, assignments: list[ShardAssignment], num_episodes: int, display: ProgressDisplay | None,
                callbacks: Sequence[ShardedProgressCallback], poll_interval_s: float,
                info: dict[str, Any]) -> ShardedResult:
        ray = self.ray
        self.collector = ray.remote(EpisodeCollector).options(num_cpus=0).remote(
            {a.index: a.episode_ids for a in assignments}, {a.index: a.endpoint for a in assignments})
        worker = ray.remote(ShardWorker)
        for assignment in assignments:
            self.actors.append(worker.options(
                name=self.actor_name(assignment.index),
                num_cpus=self.resources.cpus_per_shard,
                num_gpus=self.resources.gpus_per_shard,
                max_restarts=self.max_restarts,
                max_task_retries=self.max_restarts,
            ).remote())
        names = tuple(self.actor_name(a.index) for a in assignments)
        pending = {self._submit(a, len(assignments)): a for a in assignments}
        resubmits = dict.fromkeys(range(len(assignments)), 0)
        started = time.perf_counter()
        error: str | None = None
        interrupted = False
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_interval_s)
                for reference in ready:
                    assignment = pending.pop(reference)
                    failure, actor_died = self._failure_of(reference)
                    if failure is None:
                        continue
                    # A dead actor has used up Ray's restarts; a run that raised is tried again here.
                    retry = not actor_died and resubmits[assignment.index] < self.max_restarts
                    if self.on_shard_error == "retry" and retry:
                        resubmits[assignment.index] += 1
                        pending[self._submit(assignment, len(assignments))] = assignment
                    else:
                        error = f"shard {assignment.index} failed: {failure}"
                if error is not None:
                    break
                self._report(num_episodes, started, display, callbacks, names)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if display is not None:
                display.close()
        wall = time.perf_counter() - started
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        snapshot = ray.get(self.collector.snapshot.remote())
        result = ShardedResult.from_snapshot(
            snapshot, num_envs=self.config.num_envs, num_episodes=num_episodes, num_shards=len(assignments),
            wall_time_s=wall, info=self._info(info, assignments))
        result.error = error
        result.interrupted = interrupted
        return result

    def _submit(self, assignment: ShardAssignment, num_shards: int) -> Any:
        actor = self.actors[assignment.index]
        return actor.run.remote(self.config, assignment, num_shards, self.collector)

    def _failure_of(self, reference: Any) -> tuple[str | None, bool]:
        """``(what went wrong or None, whether the actor is dead)`` of a finished shard call."""
        try:
            self.ray.get(reference)
        except self.ray.exceptions.RayActorError as exc:
            return f"its actor died: {_first_line(exc)}", True
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            return (f"{type(cause).__name__}: {cause}" if cause is not None else _first_line(exc)), False
        return None, False

    def _report(self, num_episodes: int, started: float, display: ProgressDisplay | None,
                callbacks: Sequence[ShardedProgressCallback], names: tuple[str, ...]) -> None:
        if display is None and not callbacks:
            return
        totals = self.ray.get(self.collector.progress.remote())
        overall = EvalProgress(
            step=totals["steps"], finished=totals["finished"], successes=totals["successes"],
            num_episodes=num_episodes, in_flight=totals["in_flight"], queries=totals["queries"],
            env_requests=totals["env_requests"], elapsed_s=time.perf_counter() - started)
        if display is not None:
            display(overall)
        snapshot = ShardedProgress(overall, tuple(totals["per_shard_finished"]),
                                   tuple(totals["per_shard_attempts"]), names)
        for callback in callbacks:
            callback(snapshot)

    def _info(self, info: dict[str, Any], assignments: list[ShardAssignment]) -> dict[str, Any]:
        config = self.config
        return {
            "adapter": config.adapter,
            "environment": config.environment,
            "endpoint": ",".join(dict.fromkeys(a.endpoint for a in assignments if a.endpoint)) or None,
            "env_options": {key: str(value) for key, value in config.env_options.items()},
            "device": config.device,
            "adapter_options": {key: str(value) for key, value in masked(config.adapter_options).items()},
            "ray": {"run_id": self.run_id, "on_shard_error": self.on_shard_error,
                    "max_shard_restarts": self.max_restarts, "served_replicas": len(self.servers),
                    "cpus_per_shard": self.resources.cpus_per_shard,
                    "gpus_per_shard": self.resources.gpus_per_shard},
            **info,
        }

    def cleanup(self) -> None:
        """Kill every actor this run started (idempotent)."""
        for server in self.servers:
            with contextlib.suppress(Exception):  # the actor is killed next in any case
                self.ray.get(server.stop.remote(), timeout=5)
            self.ray.kill(server, no_restart=True)
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        if self.collector is not None:
            self.ray.kill(self.collector, no_restart=True)
        self.servers, self.actors, self.collector = [], [], None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

