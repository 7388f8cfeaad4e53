"""Scheduler step time vs Isaac Lab Arena's way of chunking, per strategy and size.

The baseline, written here after PROTOCOLS.md section 4: a device-side "needs a chunk" mask read
back every step (``any()``, boolean-mask writes, ``.item()``), and a fetch for ALL envs whenever
ANY env needs one. Ours keeps due times on the host and reads nothing back on replay steps.

Rows:
    ``replay step``: a step on which no env needs a chunk (the common case), ours vs Arena-style.
    ``<strategy> cycle``: the mean step over whole cycles of ``execute 8 of 16`` actions, loads
    included (the chunk is already on the device: no inference), for ``replay``, ``replay`` with
    ``aggregate=linear``, ``lockstep`` and ``ensemble``, each vs Arena-style over the same cycles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from arena_adapters.bench.rows import BenchSettings, Row
from arena_adapters.scheduler import ActionChunkScheduler

HORIZON, ACTION_DIM, EXECUTE = 16, 8, 8
BASELINE = "Arena-style chunking (device mask read back each step, refill all)"


class ArenaStyleScheduler:
    """Arena's pattern: device mask, checked every step; refill every env whenever any is due."""

    def __init__(self, num_envs: int, device: torch.device, execute_steps: int = EXECUTE) -> None:
        self.num_envs = num_envs
        self.execute_steps = execute_steps
        self.chunk = torch.zeros(num_envs, HORIZON, ACTION_DIM, device=device)
        self.cursor = torch.zeros(num_envs, device=device)
        self.needs = torch.ones(num_envs, dtype=torch.bool, device=device)
        self.rows = torch.arange(num_envs, device=device)
        self.fetches = 0
        self.env_requests = 0

    def get_action(self, fetch: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One step: refill every env if any needs a chunk, then each env's next action."""
        if self.needs.any():
            new_chunk = fetch()
            mask = self.needs
            self.chunk[mask] = new_chunk[mask]
            self.cursor[mask] = 0.0
            self.fetches += 1
            self.env_requests += self.num_envs
            int(mask.sum().item())
        index = self.cursor.long().clamp_(0, HORIZON - 1)
        action = self.chunk[self.rows, index]
        self.cursor += 1.0
        self.needs = self.cursor >= self.execute_steps
        self.chunk[self.needs] = 0.0
        return action

    def reset(self, env_ids: torch.Tensor) -> None:
        """Drop the chunks of ``env_ids``: they need one at the next step."""
        self.chunk[env_ids] = 0.0
        self.cursor[env_ids] = 0.0
        self.needs[env_ids] = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_segment_seconds(
    before: Callable[[], Any], steps: Callable[[], Any], per_segment: int, segments: int, device: torch.device
) -> float:
    """Median over segments of the time per call of ``steps`` (``before`` runs untimed first)."""
    samples = []
    for segment in range(segments + 1):
        before()
        _sync(device)
        started = time.perf_counter()
        for _ in range(per_segment):
            steps()
        _sync(device)
        if segment:  # the first segment warms up
            samples.append((time.perf_counter() - started) / per_segment)
    return float(np.median(samples))


def replay_step_seconds(num_envs: int, device: torch.device, segments: int) -> tuple[float, float]:
    """Seconds per replay step (no env due), ours and Arena-style: whole chunks of HORIZON actions,
    the refilling step untimed, the other HORIZON - 1 timed."""
    full_chunk = torch.randn(num_envs, HORIZON, ACTION_DIM, device=device)
    ours = ActionChunkScheduler(num_envs, device, execute_steps=HORIZON)
    baseline = ArenaStyleScheduler(num_envs, device, execute_steps=HORIZON)

    def ours_refill() -> None:
        ours.load(ours.due_envs(), full_chunk)
        ours.step()

    def ours_replay() -> None:
        ours.due_envs()
        ours.step()

    def baseline_step() -> None:
        baseline.get_action(lambda: full_chunk)

    return (
        _median_segment_seconds(ours_refill, ours_replay, HORIZON - 1, segments, device),
        _median_segment_seconds(baseline_step, baseline_step, HORIZON - 1, segments, device),
    )


def cycle_step_seconds(
    num_envs: int, device: torch.device, segments: int, **options: Any
) -> tuple[float, float]:
    """Mean seconds per step over cycles of EXECUTE steps, loads included, ours with ``options``
    and Arena-style."""
    full_chunk = torch.randn(num_envs, HORIZON, ACTION_DIM, device=device)
    options.setdefault("execute_steps", EXECUTE)
    ours = ActionChunkScheduler(num_envs, device, **options)
    baseline = ArenaStyleScheduler(num_envs, device)

    def ours_step() -> None:
        due = ours.due_envs()
        if len(due):
            ours.load(due, full_chunk if len(due) == num_envs else full_chunk[: len(due)])
        ours.step()

    def baseline_step() -> None:
        baseline.get_action(lambda: full_chunk)

    def nothing() -> None:
        return None

    cycle = EXECUTE * 4
    return (
        _median_segment_seconds(nothing, ours_step, cycle, segments, device),
        _median_segment_seconds(nothing, baseline_step, cycle, segments, device),
    )


CYCLES: dict[str, dict[str, Any]] = {
    "replay cycle": {"strategy": "replay"},
    "replay+aggregate=linear cycle": {"strategy": "replay", "aggregate": "linear"},
    "lockstep cycle": {"strategy": "lockstep"},
    "ensemble cycle": {"strategy": "ensemble", "execute_steps": EXECUTE},
}


def run(settings: BenchSettings) -> list[Row]:
    """Scheduler rows: replay-step and per-strategy cycle times at several env counts (on CPU with
    one torch thread, as small ops run fastest; both sides alike)."""
    device = torch.device(settings.device)
    sizes = (64,) if settings.quick else (64, 1024, 4096)
    segments = 2 if settings.quick else 60
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _rows(device, sizes, segments)
    finally:
        torch.set_num_threads(threads)


def _rows(device: torch.device, sizes: tuple[int, ...], segments: int) -> list[Row]:
    rows = []
    for num_envs in sizes:
        ours_s, baseline_s = replay_step_seconds(num_envs, device, segments)
        rows.append(Row("scheduler", f"replay step, {num_envs} envs", ours_s, baseline_s, BASELINE))
        for name, options in CYCLES.items():
            ours_s, baseline_s = cycle_step_seconds(num_envs, device, max(2, segments // 4), **options)
            rows.append(Row("scheduler", f"{name}, {num_envs} envs", ours_s, baseline_s, BASELINE,
                            {"execute_steps": options.get("execute_steps", EXECUTE), "horizon": HORIZON}))
    return rows


def fetch_efficiency(num_envs: int, device: torch.device, steps: int = 600) -> tuple[float, float, float, float]:
    """Share of steps with an inference and env observations sent per step, ours and Arena-style,
    for episodes out of phase (lengths 20-200)."""
    rng = np.random.default_rng(0)
    remaining = rng.integers(20, 200, num_envs)
    ours = ActionChunkScheduler(num_envs, device, execute_steps=EXECUTE)
    baseline = ArenaStyleScheduler(num_envs, device)
    full_chunk = torch.zeros(num_envs, HORIZON, ACTION_DIM, device=device)
    ours_trigger_steps = ours_requests = 0
    for _ in range(steps):
        due = ours.due_envs()
        if len(due):
            ours.load(due, full_chunk[: len(due)])
            ours_trigger_steps += 1
            ours_requests += len(due)
        ours.step()
        baseline.get_action(lambda: full_chunk)
        remaining -= 1
        done = np.flatnonzero(remaining == 0)
        if len(done):
            remaining[done] = rng.integers(20, 200, len(done))
            ours.reset(done)
            baseline.reset(torch.from_numpy(done).to(device))
    return ours_trigger_steps / steps, baseline.fetches / steps, ours_requests / steps, baseline.env_requests / steps


def sync_check(device: torch.device) -> str:
    """Run 1,000 replay steps at 4096 envs under ``torch.cuda.set_sync_debug_mode("error")`` (any
    device-to-host sync raises), then 100 queued behind a 200 ms GPU kernel; a report line each."""
    scheduler = ActionChunkScheduler(4096, device, execute_steps=10**9)
    scheduler.load(scheduler.due_envs(), torch.randn(4096, 1200, ACTION_DIM, device=device))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(1000):
            assert len(scheduler.due_envs()) == 0
            scheduler.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    torch.cuda._sleep(int(200e-3 * torch.cuda.clock_rate() * 1e6))  # type: ignore[no-untyped-call]
    started = time.perf_counter()
    for _ in range(100):
        scheduler.due_envs()
        scheduler.step()
    host_ms = (time.perf_counter() - started) * 1e3
    torch.cuda.synchronize()
    return (
        "1000 replay steps at 4096 envs under torch.cuda.set_sync_debug_mode('error'): no synchronisation\n"
        f"100 replay steps queued behind a 200 ms GPU kernel returned to the host in {host_ms:.1f} ms"
    )
