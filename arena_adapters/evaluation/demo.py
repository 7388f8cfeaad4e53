"""The embedded end-to-end demo: the ``reach`` expert served through a real protocol, evaluated.

:func:`run_demo` starts the adapter's reference server in a background process serving the
scripted ``reach`` expert, connects the adapter to it, evaluates, and always stops the server.
Any adapter whose plugin registers a :class:`~arena_adapters.records.ServedExpertRecord` for
``reach`` can serve it (:func:`demo_adapters` lists them). ``arena-adapters demo`` is the
command-line face of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from arena_adapters.envs import make_environment
from arena_adapters.envs.expert_server import EXPERT_POLICY, POLICIES, served_expert
from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.progress import ProgressDisplay
from arena_adapters.evaluation.report import EvalResult, write_json
from arena_adapters.evaluation.request_counts import RequestCount, compare_requests
from arena_adapters.evaluation.runner import ProgressCallback, evaluate
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.plugins import default_registry
from arena_adapters.policy import Policy, load_policy
from arena_adapters.records import NULL_POLICY, ServedExpertRecord

DEMO_ENVIRONMENT = "reach"
DEMO_NUM_ENVS = 16
DEMO_NUM_EPISODES = 32
"""The demo's default size: about 30 s on a 2-core CPU through any first-party adapter."""
FIRST_PARTY_ADAPTERS: tuple[str, ...] = ("gr00t", "openpi", "openvla")
"""The first-party adapters with a reference server (``local`` also serves the expert, in-process)."""


def demo_adapters() -> list[str]:
    """Adapters that can serve the demo's expert: those whose plugins registered a served expert
    for ``reach`` (loads every plugin)."""
    registry = default_registry()
    registry.load_all()
    return sorted({r.adapter for r in registry.records(ServedExpertRecord) if r.environment == DEMO_ENVIRONMENT})


def run_demo(
    adapter: str = "gr00t",
    *,
    num_envs: int = DEMO_NUM_ENVS,
    num_episodes: int = DEMO_NUM_EPISODES,
    device: str = "cpu",
    policy: str = EXPERT_POLICY,
    env_options: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    progress: ProgressDisplay | bool | None = None,
    callbacks: Sequence[ProgressCallback] = (),
    report_path: str | os.PathLike[str] | None = None,
    figure: bool = True,
) -> EvalResult:
    """Evaluate the ``reach`` expert served through ``adapter``'s reference server.

    Args:
        adapter: any adapter that serves the expert (``gr00t``, ``openpi``, ``openvla``: a server
            process each; ``local``: in-process; third-party ones as their plugins register).
        num_envs, num_episodes, device: the evaluation size and env device.
        policy: ``"expert"``, or ``"null"`` to serve the reference server's constant zero-work
            chunk instead (measures the adapter alone; the episodes then time out).
        env_options: options of the ``reach`` env (``image_height``, ``seed``...).
        client_options: adapter options added to (or overriding) the demo's own.
        progress, callbacks, report_path, figure: as for :func:`~arena_adapters.evaluation.evaluate`.

    Returns:
        The evaluation result; ``result.info`` holds the server's ``endpoint``, ``server_pid`` and
        ``server_start_s`` (how long it took to start); ``result.request_comparison`` the requests
        sent next to the ideal and an Arena-style client (complete runs).

    Raises:
        UnknownAdapterError: no such adapter (the message says how to install first-party ones).
        ConfigError: the adapter serves no expert, or ``policy`` is not one of ``expert``, ``null``.
        TransportError: the server process failed to start.
    """
    if policy not in POLICIES:
        raise ConfigError(f"option 'policy': expected one of {list(POLICIES)}, got {policy!r}")
    served = _served_expert(adapter)
    env = make_environment(DEMO_ENVIRONMENT, num_envs=num_envs, device=device, **dict(env_options or {}))
    options = {**served.client_options, **dict(client_options or {})}
    info: dict[str, Any] = {
        "adapter": adapter,
        "environment": DEMO_ENVIRONMENT,
        "env_options": dict(env_options or {}),
        "device": device,
        "served_policy": policy,
        "adapter_options": {key: str(value) for key, value in options.items()},
    }
    run = partial(_evaluate, env=env, num_episodes=num_episodes, info=info, progress=progress,
                  callbacks=callbacks, report_path=report_path, figure=figure)
    try:
        if served.in_process:
            if policy == NULL_POLICY:
                raise ConfigError(f"adapter {adapter!r} has no server to serve the null policy")
            with load_policy(adapter, policy=served.factory(), **options) as loaded:
                return run(loaded)
        with ServerProcess.for_expert(adapter, policy=policy, environment=DEMO_ENVIRONMENT) as server:
            info["endpoint"] = server.endpoint
            info["server_start_s"] = round(server.started_in_s, 3)
            info["server_pid"] = server.pid
            with load_policy(adapter, endpoint=server.endpoint, **options) as loaded:
                return run(loaded)
    finally:
        env.close()


def _evaluate(policy: Policy, **arguments: Any) -> EvalResult:
    """:func:`evaluate`, then the request counts compared (and written into the report)."""
    result = evaluate(policy, **arguments)
    scheduler = policy.scheduler
    if result.complete and scheduler is not None and scheduler.horizon > 0:
        chunk_steps = scheduler.horizon if scheduler.execute_steps is None else min(
            scheduler.execute_steps, scheduler.horizon)
        result.request_comparison = compare_requests(
            result.episodes, result.num_envs, chunk_steps, RequestCount(result.queries, result.env_requests))
        if result.report_path is not None:
            write_json(result, result.report_path)
    return result


def _served_expert(adapter: str) -> ServedExpertRecord:
    """The adapter's served expert, failing before any process starts (a missing first-party
    plugin's error says how to install it)."""
    return served_expert(adapter, DEMO_ENVIRONMENT, default_registry())
