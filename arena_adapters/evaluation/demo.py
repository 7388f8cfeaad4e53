"""The embedded end-to-end demo: the ``reach`` expert served through a real protocol, evaluated.

:func:`run_demo` starts the adapter's reference server in a background process serving the
scripted ``reach`` expert, connects the adapter to it, evaluates, and always stops the server.
``arena-adapters demo`` is the command-line face of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from arena_adapters.envs import make_environment
from arena_adapters.envs.reach_serving import SERVED_EXPERTS
from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.progress import ProgressDisplay
from arena_adapters.evaluation.report import EvalResult
from arena_adapters.evaluation.runner import ProgressCallback, evaluate
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.plugins import default_registry
from arena_adapters.policy import load_policy

DEMO_ADAPTERS: tuple[str, ...] = ("gr00t", "openpi", "openvla")
"""The first-party adapters the demo serves the expert through (``local`` also works, in-process)."""


def run_demo(
    adapter: str = "gr00t",
    *,
    num_envs: int = 16,
    num_episodes: int = 64,
    device: str = "cpu",
    env_options: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    progress: ProgressDisplay | bool | None = None,
    callbacks: Sequence[ProgressCallback] = (),
    report_path: str | os.PathLike[str] | None = None,
    figure: bool = True,
) -> EvalResult:
    """Evaluate the ``reach`` expert served through ``adapter``'s reference server.

    Args:
        adapter: ``gr00t``, ``openpi``, ``openvla`` (a server process each) or ``local`` (in-process).
        num_envs, num_episodes, device: the evaluation size and env device.
        env_options: options of the ``reach`` env (``image_height``, ``seed``...).
        client_options: adapter options added to (or overriding) the demo's own.
        progress, callbacks, report_path, figure: as for :func:`~arena_adapters.evaluation.evaluate`.

    Returns:
        The evaluation result; ``result.info`` holds the server's ``endpoint``, ``server_pid`` and
        ``server_start_s`` (how long it took to start).

    Raises:
        ConfigError: no served expert for ``adapter``.
        TransportError: the server process failed to start.
    """
    served = SERVED_EXPERTS.get(adapter)
    if served is None:
        raise ConfigError(f"the demo supports adapters {', '.join(SERVED_EXPERTS)}; got {adapter!r}")
    if not served.in_process:
        _require_adapter(adapter)
    env = make_environment("reach", num_envs=num_envs, device=device, **dict(env_options or {}))
    options = {**served.client_options, **dict(client_options or {})}
    info: dict[str, Any] = {
        "adapter": adapter,
        "environment": "reach",
        "env_options": dict(env_options or {}),
        "device": device,
        "adapter_options": {key: str(value) for key, value in options.items()},
    }
    run = partial(evaluate, env=env, num_episodes=num_episodes, info=info, progress=progress,
                  callbacks=callbacks, report_path=report_path, figure=figure)
    try:
        if served.in_process:
            with load_policy(adapter, policy=served.make_policy(), **options) as policy:
                return run(policy)
        with ServerProcess.for_expert(adapter) as server:
            info["endpoint"] = server.endpoint
            info["server_start_s"] = round(server.started_in_s, 3)
            info["server_pid"] = server.pid
            with load_policy(adapter, endpoint=server.endpoint, **options) as policy:
                return run(policy)
    finally:
        env.close()


def _require_adapter(adapter: str) -> None:
    """Fail before starting a server process when the adapter's plugin is not installed."""
    default_registry().adapter(adapter)  # a missing first-party plugin's error says how to install it
