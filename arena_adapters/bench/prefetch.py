"""Eval throughput with asynchronous prefetch vs synchronous chunk queries (Isaac Lab Arena's way).

The scenario of issue 11: 50-60 ms inference, a 20 ms control period. The built-in ``reach`` env
(DROID-shaped, two cameras rendered every step) is driven for a fixed number of steps by a policy
that takes ``latency_s`` per inference and holds still, so no episode ends while measured; chunks of
16 actions, 8 executed. Every env step is paced to ``period_s`` in total, as a simulator stepping
physics in real time would be: the env's own work (physics, rendering, reading ``done``) counts
toward it and only the rest is slept. The cameras are ``image_height x image_width`` = 90 x 160
here, not DROID's 180 x 320: on a 2-core CPU, rendering 64 envs' two 180 x 320 cameras alone takes
15 ms of the 20 ms when the machine is idle and overruns the period under load (the policies do not
read the images; the GR00T reference server gets them under their keys, unresized). Scenarios:

- ``in phase``: every env's chunk starts at the same step (one query group);
- ``out of phase``: the envs' chunk clocks staggered into ``phases`` groups, ``execute_steps /
  phases`` steps apart (during warm-up each group starts over at its own step, as episodes ending at
  different times do), so a group is due every other step.

Adapters: ``local`` (the model in-process) and, when the plugin is installed, ``gr00t`` (its
reference server on loopback in a process of its own, its model taking the same time).

Two limits are reported with each row, both above 1 only where prefetch can help:

- ``ceiling`` (measured in the synchronous run): the speed-up if every query that prefetch can move
  off the step path cost nothing, i.e. the run's time over its time minus its queries that no reset
  forced (a query for an env that was just reset cannot be made ahead: its observation did not
  exist).
- ``bound`` (arithmetic, :func:`bound`): one cycle of ``execute_steps`` steps takes ``E * period +
  G * latency`` synchronously (``G`` query groups), and with prefetch at least the longer of ``E *
  period`` (the env) and ``G * latency`` (one server answers one query at a time). In phase that is
  ``(8 * 20 + 60) / (8 * 20) = 1.375x``; in 4 groups ``(160 + 240) / 240 = 1.67x``, the server
  busy all the time; with ``prefetch_window=2`` two groups share a request: ``400 / 160 = 2.5x``.
  It counts ``latency`` per query; a real query also encodes, sends and decodes, which a
  synchronous run waits for too, so a measured speed-up can be a little above it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

import arena_adapters as aa
from arena_adapters.bench.rows import BenchSettings, Row
from arena_adapters.envs.reach import ReachEnv
from arena_adapters.errors import AdapterError
from arena_adapters.evaluation.server_process import ServerProcess

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
    period_s: float = 0.020
    steps: int = 120
    phases: int = 1
    image_height: int = 90
    image_width: int = 160


@dataclass(frozen=True)
class Run:
    """Measured: seconds per step, the seconds a synchronous run spent in queries no reset forced,
    and the env's own work per step (of the paced period)."""

    seconds_per_step: float
    hideable_s: float
    total_s: float
    env_s: float
    overruns: int

    @property
    def ceiling(self) -> float:
        """Speed-up if the hideable query time were gone."""
        return self.total_s / max(self.total_s - self.hideable_s, 1e-9)


def bound(scenario: Scenario, prefetch_steps: int, prefetch_window: int = 0) -> float:
    """The best speed-up prefetch can give in ``scenario``, by arithmetic (see the module docstring).

    A query made ``prefetch_steps`` steps ahead hides ``prefetch_steps * period`` of its latency;
    the rest still stalls the step that needs its chunk. A ``prefetch_window`` of ``w`` merges each
    group's request with those of the groups due within ``w`` steps after it.
    """
    cycle = EXECUTE_STEPS * scenario.period_s
    groups = scenario.phases
    spacing = EXECUTE_STEPS // groups
    requests = math.ceil(groups / (1 + prefetch_window // spacing))
    stall = max(0.0, scenario.latency_s - prefetch_steps * scenario.period_s)
    synchronous = cycle + groups * scenario.latency_s
    return synchronous / max(cycle + requests * stall, requests * scenario.latency_s)


def measure(policy: aa.Policy, scenario: Scenario) -> Run:
    """Drive the reach env with ``policy`` for ``scenario.steps`` paced steps (after a warm-up)."""
    num_envs = scenario.num_envs
    env = ReachEnv(num_envs=num_envs, seed=0, image_height=scenario.image_height, image_width=scenario.image_width)
    stride = EXECUTE_STEPS // scenario.phases
    group = np.arange(num_envs) % scenario.phases
    warm_up = 2 * EXECUTE_STEPS  # connection made, chunk clocks staggered, first prefetches in flight
    with torch.inference_mode():
        obs, _ = env.reset()
        policy.reset()
        just_reset = np.ones(num_envs, dtype=bool)
        hideable = env_s = 0.0
        overruns = 0
        started = time.perf_counter()
        for step in range(warm_up + scenario.steps):
            if step == warm_up:
                started, hideable, env_s, overruns = time.perf_counter(), 0.0, 0.0, 0
            if scenario.phases > 1 and 0 < step < EXECUTE_STEPS and step % stride == 0:
                restart = np.flatnonzero(group == step // stride)  # this group's clock starts here
                policy.reset(restart)
                just_reset[restart] = True
            due = policy.scheduler.due_envs() if policy.scheduler is not None else np.zeros(0, np.int64)
            forced = bool(just_reset[due].any()) if len(due) else True
            before = time.perf_counter()
            actions = policy.get_action(obs)
            if len(due) and not forced:
                hideable += time.perf_counter() - before
            began = time.perf_counter()  # the control period: the env's work, then sleep for the rest
            obs, _, terminated, truncated, _ = env.step(actions)
            done = np.flatnonzero((terminated | truncated).cpu().numpy())
            worked = time.perf_counter() - began
            env_s += worked
            if worked < scenario.period_s:
                time.sleep(scenario.period_s - worked)
            else:
                overruns += 1
            just_reset[:] = False
            if len(done):
                policy.reset(done)
                just_reset[done] = True
        total = time.perf_counter() - started
    return Run(total / scenario.steps, hideable, total, env_s / scenario.steps, overruns)


def slow_reference_policy() -> Any:
    """The GR00T reference test policy taking :attr:`Scenario.latency_s` per inference (the served
    policy of the section's GR00T server, built in the server's process)."""
    from arena_adapters_gr00t.reference_policy import ReferencePolicy

    latency_s = Scenario.latency_s

    class SlowReferencePolicy(ReferencePolicy):
        def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
            time.sleep(latency_s)
            return super().get_action(observation, options)

    return SlowReferencePolicy()


@contextlib.contextmanager
def _gr00t_server() -> Iterator[str | None]:
    """The GR00T reference server serving :func:`slow_reference_policy` in a process of its own, as
    a policy server runs (in this process, its decoding and encoding would hold this process's GIL
    while the env steps); ``None`` when the plugin is not installed."""
    try:
        process = ServerProcess.for_policy("gr00t", slow_reference_policy, {"format": "flat"})
    except (AdapterError, ImportError):
        yield None
        return
    with process as server:
        yield server.endpoint


def compare(
    make: Callable[[int, int], aa.Policy], scenario: Scenario, prefetch: tuple[int, int], repeats: int
) -> tuple[Run, Run]:
    """Synchronous and prefetch runs (``prefetch``: steps and window) of one scenario, alternated
    ``repeats`` times (so a load spike on a shared machine hits both alike); the median run of each."""
    syncs, aheads = [], []
    for _ in range(repeats):
        with make(0, 0) as policy:
            syncs.append(measure(policy, scenario))
        with make(*prefetch) as policy:
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
    plans: list[tuple[str, int, tuple[tuple[int, int], ...]]]  # (prefetch_steps, prefetch_window) choices
    if settings.quick:
        base = Scenario(num_envs=4, latency_s=0.01, period_s=0.004, steps=16, image_height=32, image_width=32)
        plans = [("in phase", 1, ((4, 0),))]
    else:
        base = Scenario()
        plans = [("in phase", 1, ((4, 0), (7, 0))), ("out of phase", 4, ((4, 0), (7, 0), (4, 2)))]
    rows = []
    with _gr00t_server() if not settings.quick else contextlib.nullcontext(None) as endpoint:
        adapters: dict[str, Callable[[int, int], aa.Policy]] = {
            "local": lambda m, w: aa.load_policy(
                "local", policy=SlowStill(base.latency_s), execute_steps=EXECUTE_STEPS, prefetch_steps=m,
                prefetch_window=w),
        }
        if endpoint is not None:
            adapters["gr00t"] = lambda m, w: aa.load_policy(
                "gr00t", endpoint=endpoint, execute_steps=EXECUTE_STEPS, prefetch_steps=m, prefetch_window=w,
                timeout=30, image_size=None)  # send the bench's small images as they are
        for adapter, make in adapters.items():
            for label, phases, prefetch_choices in plans:
                scenario = replace(base, phases=phases)
                for prefetch_steps, window in prefetch_choices:
                    sync, ahead = compare(make, scenario, (prefetch_steps, window), 1 if settings.quick else 3)
                    merged = f", prefetch_window={window}" if window else ""
                    rows.append(Row(
                        "prefetch",
                        f"{adapter}, {label}, prefetch_steps={prefetch_steps}{merged}, {scenario.num_envs} envs",
                        ahead.seconds_per_step,
                        sync.seconds_per_step,
                        BASELINE,
                        {"unit": "seconds per env step (ratio = speed-up)",
                         "ceiling": round(sync.ceiling, 3),
                         "bound": round(bound(scenario, prefetch_steps, window), 3),
                         "latency_ms": scenario.latency_s * 1e3, "period_ms": scenario.period_s * 1e3,
                         "query_groups": phases,
                         "images": f"{scenario.image_height}x{scenario.image_width} (DROID: 180x320)",
                         "env_work_ms": round(1e3 * max(sync.env_s, ahead.env_s), 2),
                         "period_overruns": sync.overruns + ahead.overruns},
                    ))
    return rows
