"""Step time and fetch efficiency of the shared scheduler vs Isaac Lab Arena's way of chunking.

The baseline is written here after PROTOCOLS.md section 4: a device-side "needs a chunk" mask that is
read back every step (``any()``, boolean-mask writes, ``.item()``), and a fetch for ALL envs whenever
ANY env needs one. Ours keeps the due-times on the host and reads nothing back on replay steps.

    python benchmarks/scheduler_step.py                 # CPU, and CUDA if available
    python benchmarks/scheduler_step.py --device cuda --sync-check

Prints, per num_envs: microseconds per replay step (ours, baseline, ratio), and for envs whose
episodes are out of phase: the share of steps that trigger an inference and the env-observations
sent per step (ours, baseline, ratio).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from arena_adapters.scheduler import ActionChunkScheduler

HORIZON, ACTION_DIM, EXECUTE = 16, 8, 8


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

    def get_action(self, fetch: callable) -> torch.Tensor:  # type: ignore[valid-type]
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
        self.chunk[env_ids] = 0.0
        self.cursor[env_ids] = 0.0
        self.needs[env_ids] = True


def time_replay_steps(num_envs: int, device: torch.device, steps: int) -> tuple[float, float]:
    """Microseconds per replay step (no env due), ours and baseline: the median over chunks.

    Both execute whole chunks of HORIZON actions; the step that refills is not timed, the other
    HORIZON - 1 steps of each chunk are.
    """
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

    results = []
    for refill, replay in ((ours_refill, ours_replay), (baseline_step, baseline_step)):
        per_step = []
        for segment in range(steps // (HORIZON - 1) + 1):
            refill()
            _sync(device)
            started = time.perf_counter()
            for _ in range(HORIZON - 1):
                replay()
            _sync(device)
            if segment:  # the first segment warms up
                per_step.append((time.perf_counter() - started) / (HORIZON - 1))
        results.append(float(np.median(per_step)) * 1e6)  # the median resists a busy machine's outliers
    return results[0], results[1]


def fetch_efficiency(num_envs: int, device: torch.device, steps: int = 600) -> tuple[float, float, float, float]:
    """Share of steps with an inference and env-observations per step for out-of-phase episodes."""
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
    return (
        ours_trigger_steps / steps,
        baseline.fetches / steps,
        ours_requests / steps,
        baseline.env_requests / steps,
    )


def sync_check(device: torch.device) -> str:
    """Run 1,000 replay steps under sync debug mode "error": any device-to-host sync raises."""
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
    # Second proof: queue ~200 ms of GPU work first; a step that synchronised would wait for it.
    torch.cuda._sleep(int(200e-3 * torch.cuda.clock_rate() * 1e6))
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu, cuda (default: cpu and cuda if present)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--sync-check", action="store_true", help="also prove replay steps never sync (CUDA)")
    args = parser.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}; H={HORIZON}, D={ACTION_DIM}, execute_steps={EXECUTE}")
    for name in devices:
        device = torch.device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"\n== {label}: replay step time (us) ==")
        print(f"{'num_envs':>9} {'ours':>9} {'arena-style':>12} {'speed-up':>9}")
        for num_envs in (1, 64, 1024, 4096):
            ours_us, baseline_us = time_replay_steps(num_envs, device, args.steps)
            print(f"{num_envs:>9} {ours_us:>9.1f} {baseline_us:>12.1f} {baseline_us / ours_us:>8.1f}x")
        print(f"\n== {label}: fetches with episodes out of phase (execute {EXECUTE} of {HORIZON}) ==")
        print(f"{'num_envs':>9} {'steps w/ inference':>20} {'env obs sent / step':>22} {'ratio':>7}")
        for num_envs in (64, 1024):
            ours_share, base_share, ours_req, base_req = fetch_efficiency(num_envs, device)
            print(
                f"{num_envs:>9} {ours_share:>8.0%} vs {base_share:>6.0%}     "
                f"{ours_req:>8.1f} vs {base_req:>8.1f}   {base_req / ours_req:>6.1f}x"
            )
        if args.sync_check and device.type == "cuda":
            print("\n" + sync_check(device))


if __name__ == "__main__":
    main()
