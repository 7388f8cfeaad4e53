"""The evaluation loop: a vectorized env driven through a policy for exactly ``M`` episodes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from arena_adapters.envs.base import VectorEnv, task_description_of
from arena_adapters.errors import ActionError
from arena_adapters.evaluation.episodes import EpisodeLedger
from arena_adapters.evaluation.figure import MISSING_MATPLOTLIB, write_figure
from arena_adapters.evaluation.progress import EvalProgress, ProgressDisplay
from arena_adapters.evaluation.report import EvalResult, write_json
from arena_adapters.layouts import ActionLayout, action_layout_of, check_layouts
from arena_adapters.policy import Policy

ProgressCallback = Callable[[EvalProgress], None]
"""Called after every env step with a snapshot; raising ``KeyboardInterrupt`` stops the run cleanly."""


def figure_path_for(report_path: str | os.PathLike[str]) -> Path:
    """The PNG figure written next to a JSON report: ``run.json`` -> ``run.png``."""
    return Path(report_path).with_suffix(".png")


def evaluate(
    policy: Policy,
    env: VectorEnv,
    num_episodes: int,
    *,
    instruction: str | None = None,
    progress: ProgressDisplay | bool | None = None,
    callbacks: Sequence[ProgressCallback] = (),
    report_path: str | os.PathLike[str] | None = None,
    figure: bool = True,
    info: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
) -> EvalResult:
    """Run ``env`` with ``policy`` until exactly ``num_episodes`` episodes have finished.

    The loop is Isaac Lab Arena's: ``env.reset()``, ``policy.reset()``, then per step
    ``policy.get_action(obs)``, ``env.step(actions)`` and ``policy.reset(env_ids)`` for the envs
    that finished (the env restarts them inside ``step``). Episodes are counted in the order they
    start, so exactly ``num_episodes`` are reported (see :mod:`arena_adapters.evaluation.episodes`);
    envs whose further episodes will not count are paused (``policy.pause``): they hold their last
    action and are no longer queried.

    Args:
        policy: a loaded adapter (:func:`arena_adapters.load_policy`). It is not closed here.
        env: a vectorized env (:class:`~arena_adapters.envs.base.VectorEnv`).
        num_episodes: how many episodes to count.
        instruction: the task instruction; default: the policy's own if it has one, else the
            env's ``cfg.task_description``.
        progress: a :class:`~arena_adapters.evaluation.progress.ProgressDisplay` to update after
            every step and close at the end; ``True`` for one on stderr; ``None``/``False`` for none.
        callbacks: called after every step with an :class:`EvalProgress`.
        report_path: write the JSON report there, and the PNG figure next to it (``.png``).
        figure: also write the figure (needs matplotlib; skipped with a note in the report if missing).
        info: context copied into the report (adapter, endpoint, environment, options...).
        max_steps: stop after this many env steps even if episodes are still running.

    Returns:
        The :class:`EvalResult`. On Ctrl-C (``KeyboardInterrupt``, also from a callback) the run
        stops cleanly and the partial result is returned with ``interrupted=True`` (and written).
        Any other exception is recorded as ``error`` in a written partial report, then re-raised.
    """
    num_envs = env.num_envs
    ledger = EpisodeLedger(num_envs, num_episodes)
    stats = policy.stats
    first_latency, first_queries, first_env_requests = stats.latency_count, stats.queries, stats.env_requests
    text = instruction if instruction is not None else (policy.instruction or task_description_of(env))
    result = EvalResult(num_envs=num_envs, num_episodes=num_episodes, info={**(info or {}), "instruction": text})
    display = ProgressDisplay() if progress is True else (progress or None)
    listeners: list[ProgressCallback] = [*callbacks, display] if display is not None else list(callbacks)
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        with torch.inference_mode():
            obs, _ = env.reset()
            policy.reset()
            policy.pause(np.flatnonzero(~ledger.active))  # envs beyond the budget never count
            if text:
                policy.set_instruction(text)
            check_layouts(policy.action_layout, env_action_layout(env), adapter=policy.name,
                          environment=type(getattr(env, "unwrapped", env)).__name__)
            expected_width = env_action_dim(env)
            while not ledger.done and (max_steps is None or ledger.step < max_steps):
                actions = policy.get_action(obs)
                if expected_width is not None:
                    check_action_width(policy.name, actions, expected_width)
                    expected_width = None  # the width cannot change after the first step
                obs, _, terminated, truncated, extras = env.step(actions)
                ended, success = _finished_and_success(terminated, truncated, extras)
                finished_ids = np.flatnonzero(ended)
                was_active = ledger.active[finished_ids]
                finished_before = ledger.finished
                restarting = ledger.record_step(ended, success)
                if len(restarting):
                    policy.reset(restarting)
                stopping = finished_ids[was_active & ~ledger.active[finished_ids]]
                if len(stopping):
                    policy.pause(stopping)  # masked out from now on: hold still, cost no inference
                if listeners:
                    snapshot = EvalProgress(
                        step=ledger.step,
                        finished=ledger.finished,
                        successes=ledger.successes,
                        num_episodes=num_episodes,
                        in_flight=ledger.in_flight,
                        queries=stats.queries - first_queries,
                        env_requests=stats.env_requests - first_env_requests,
                        elapsed_s=time.perf_counter() - started,
                        new_episodes=tuple(ledger.episodes[finished_before:]),
                    )
                    for listener in listeners:
                        listener(snapshot)
    except KeyboardInterrupt:
        result.interrupted = True
    except BaseException as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        failure = exc
    finally:
        if display is not None:
            display.close()
    result.wall_time_s = time.perf_counter() - started
    result.episodes = list(ledger.episodes)
    result.latencies_s = stats.latencies_since(first_latency)
    result.queries = stats.queries - first_queries
    result.env_requests = stats.env_requests - first_env_requests
    result.steps = ledger.step
    if report_path is not None:
        write_outputs(result, report_path, figure)
    if failure is not None:
        raise failure
    return result


def env_action_layout(env: VectorEnv) -> ActionLayout | None:
    """The :class:`~arena_adapters.layouts.ActionLayout` the env declares (its ``action_layout``), or
    one of its width alone when it only says that (see :func:`env_action_dim`)."""
    declared = action_layout_of(getattr(env, "unwrapped", env)) or action_layout_of(env)
    if declared is not None:
        return declared
    width = env_action_dim(env)
    return ActionLayout.of_width(width) if width is not None else None


def env_action_dim(env: VectorEnv) -> int | None:
    """The width of the env's actions, when it says: ``action_dim``, Isaac Lab's
    ``action_manager.total_action_dim``, or a gymnasium ``single_action_space``; else ``None``."""
    base = getattr(env, "unwrapped", env)
    width = getattr(base, "action_dim", None)
    if width is None:
        width = getattr(getattr(base, "action_manager", None), "total_action_dim", None)
    if width is None:
        shape = getattr(getattr(base, "single_action_space", None), "shape", None)
        width = shape[-1] if shape else None
    return int(width) if isinstance(width, int) else None


def check_action_width(adapter: str, actions: torch.Tensor, expected: int) -> None:
    """Raise :class:`ActionError` when the policy's actions are not ``expected`` wide.

    The message names the mismatch, both widths and the fix, instead of the env's own error later.
    """
    width = int(actions.shape[-1])
    if width != expected:
        raise ActionError(
            f"action width mismatch: adapter {adapter!r} returns {width}-D actions, the environment expects "
            f"{expected}-D. Set the adapter's action width option where it has one (arena-adapters eval "
            f"--action-dim {expected}, or action_dim={expected} in load_policy; see 'arena-adapters info "
            f"{adapter}'), or serve a model made for this environment"
        )


def _finished_and_success(
    terminated: torch.Tensor, truncated: torch.Tensor, extras: Mapping[str, Any]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Host bool arrays: envs whose episode ended, and whether it succeeded (one device sync)."""
    ended = terminated.bool() | truncated.bool()
    success = extras.get("success") if isinstance(extras, Mapping) else None
    success = terminated.bool() & ~truncated.bool() if success is None else success.bool().to(ended.device)
    flags = torch.stack((ended.reshape(-1), success.reshape(-1) & ended.reshape(-1))).cpu().numpy()
    return flags[0], flags[1]


def write_outputs(result: EvalResult, report_path: str | os.PathLike[str], figure: bool = True) -> None:
    """Write ``result``'s JSON report to ``report_path`` and, with ``figure``, its PNG next to it;
    set ``result.report_path``/``figure_path`` (a missing matplotlib is noted in the report)."""
    target = Path(report_path)
    if figure:
        result.figure_path = write_figure(result, figure_path_for(target))
        if result.figure_path is None:
            result.info["figure"] = f"skipped: {MISSING_MATPLOTLIB}"
    result.report_path = write_json(result, target)
