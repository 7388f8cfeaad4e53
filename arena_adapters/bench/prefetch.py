"""Eval throughput with asynchronous prefetch vs synchronous chunk queries (Isaac Lab Arena's way).

The built-in ``reach`` env (DROID-shaped, two 180x320 cameras rendered every step) is driven for a
fixed number of steps by a policy that takes ``latency_s`` per inference and holds still, so
episodes run to their time limit; chunks of 16 actions, 8 executed. Every env step also sleeps
``sim_s``, as a simulator's physics would take. Scenarios:

- ``in phase``: every episode starts together (one query group);
- ``out of phase``: episode clocks staggered into 4 groups at the start, as Isaac Lab's RL runners
  randomise ``episode_length_buf``, so the groups are due at different steps.

Adapters: ``local`` (the model in-process) and, when the plugin is installed, ``gr00t`` (its
reference server on loopback, its model taking the same time).

``ceiling`` is the speed-up if every query that prefetch can move off the step path cost nothing:
the synchronous run's time minus its time in queries that no reset forced, measured in that run.
A query for an env that was just reset cannot be made ahead (its observation did not exist).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import arena_adapters as aa
from arena_adapters.bench.rows import BenchSettings, Row
from arena_adapters.envs.reach import ReachEnv

BASELINE = "synchronous queries (prefetch_steps=0)"
EXECUTE_STEPS = 8
HORIZON = 16


class SlowStill:
    """Holds every joint where it is, after ``latency_s`` of 'inference'."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        time.sleep(self.latency_s)
        joints = observation["policy"]["joint_pos"]
        gripper = torch.zeros(joints.shape[0], 1)
        return torch.cat([joints, gripper], -1).unsqueeze(1).repeat(1, HORIZON, 1)


@dataclass(frozen=True)
class Scenario:
    """Sizes and times of one prefetch measurement."""

    num_envs: int = 64
    latency_s: float = 0.060
    sim_s: float = 0.020
    steps: int = 120
    phases: int = 1


@dataclass(frozen=True)
class Run:
    """Measured: seconds per step, and the seconds a synchronous run spent in queries no reset forced."""

    seconds_per_step: float
    hideable_s: float
    total_s: float

    @property
    def ceiling(self) -> float:
        """Speed-up if the hideable query time were gone."""
        return self.total_s / max(self.total_s - self.hideable_s, 1e-9)


def measure(policy: aa.Policy, scenario: Scenario) -> Run:
    """Drive the reach env with ``policy`` for ``scenario.steps`` steps (after a warm-up)."""
    env = ReachEnv(num_envs=scenario.num_envs, seed=0)
    with torch.inference_mode():
        obs, _ = env.reset()
        policy.reset()
        if scenario.phases > 1:  # stagger episode clocks, as Isaac Lab RL runners do
            group = torch.arange(scenario.num_envs) % scenario.phases
            env.episode_length_buf = group * (env.max_episode_length // scenario.phases)
        just_reset = np.ones(scenario.num_envs, dtype=bool)
        hideable = 0.0
        for step in range(scenario.steps + 5):
            if step == 5:  # warm-up done: connection made, first chunks in
                started, hideable = time.perf_counter(), 0.0
            due = policy.scheduler.due_envs() if policy.scheduler is not None else np.zeros(0, np.int64)
            forced = bool(just_reset[due].any()) if len(due) else True
            before = time.perf_counter()
            actions = policy.get_action(obs)
            if len(due) and not forced:
                hideable += time.perf_counter() - before
            time.sleep(scenario.sim_s)
            obs, _, terminated, truncated, _ = env.step(actions)
            just_reset[:] = False
            done = np.flatnonzero((terminated | truncated).cpu().numpy())
            if len(done):
                policy.reset(done)
                just_reset[done] = True
        total = time.perf_counter() - started
    return Run(total / scenario.steps, hideable, total)


@contextlib.contextmanager
def _gr00t_server(latency_s: float) -> Iterator[str | None]:
    try:
        from arena_adapters_gr00t.reference_policy import ReferencePolicy
        from arena_adapters_gr00t.server import ReferenceServer
    except ImportError:
        yield None
        return

    class SlowReferencePolicy(ReferencePolicy):
        def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
            time.sleep(latency_s)
            return super().get_action(observation, options)

    server = ReferenceServer(SlowReferencePolicy(), "127.0.0.1", 0, format="flat").start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def compare(
    make: Callable[[int], aa.Policy], scenario: Scenario, prefetch_steps: int, repeats: int
) -> tuple[Run, Run]:
    """Synchronous and prefetch runs of one scenario, alternated ``repeats`` times (so a load
    spike on a shared machine hits both alike); the median run of each."""
    syncs, aheads = [], []
    for _ in range(repeats):
        with make(0) as policy:
            syncs.append(measure(policy, scenario))
        with make(prefetch_steps) as policy:
            aheads.append(measure(policy, scenario))
    return _median_run(syncs), _median_run(aheads)


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds_per_step)[len(runs) // 2]


def run(settings: BenchSettings) -> list[Row]:
    """Prefetch rows: steps/s with ``prefetch_steps`` vs synchronous, per adapter and scenario."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _rows(settings)
    finally:
        torch.set_num_threads(threads)


def _rows(settings: BenchSettings) -> list[Row]:
    plans: list[tuple[str, int, tuple[int, ...]]]
    if settings.quick:
        base = Scenario(num_envs=4, latency_s=0.01, sim_s=0.002, steps=12)
        plans = [("in phase", 1, (4,))]
    else:
        base = Scenario()
        plans = [("in phase", 1, (4, 7)), ("out of phase", 4, (4, 7))]
    rows = []
    with _gr00t_server(base.latency_s) as endpoint:
        adapters: dict[str, Callable[[int], aa.Policy]] = {
            "local": lambda m: aa.load_policy(
                "local", policy=SlowStill(base.latency_s), execute_steps=EXECUTE_STEPS, prefetch_steps=m),
        }
        if endpoint is not None and not settings.quick:
            adapters["gr00t"] = lambda m: aa.load_policy(
                "gr00t", endpoint=endpoint, execute_steps=EXECUTE_STEPS, prefetch_steps=m, timeout=30)
        for adapter, make in adapters.items():
            for label, phases, prefetch_choices in plans:
                scenario = Scenario(base.num_envs, base.latency_s, base.sim_s, base.steps, phases)
                for prefetch_steps in prefetch_choices:
                    sync, ahead = compare(make, scenario, prefetch_steps, 1 if settings.quick else 3)
                    rows.append(Row(
                        "prefetch",
                        f"{adapter}, {label}, prefetch_steps={prefetch_steps}, {scenario.num_envs} envs",
                        ahead.seconds_per_step,
                        sync.seconds_per_step,
                        BASELINE,
                        {"unit": "seconds per env step (ratio = speed-up)",
                         "ceiling": round(sync.ceiling, 3),
                         "latency_ms": scenario.latency_s * 1e3, "sim_ms": scenario.sim_s * 1e3},
                    ))
    return rows
