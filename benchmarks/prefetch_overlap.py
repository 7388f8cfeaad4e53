"""Eval throughput with asynchronous prefetch vs synchronous chunk queries (Isaac Lab Arena's way).

    .venv/bin/python benchmarks/prefetch_overlap.py [--num-envs 64] [--latency-ms 60] [--sim-ms 20] [--steps 120]

The built-in ``reach`` env (DROID-shaped, two 180x320 cameras, rendered every step) is driven for a
fixed number of steps by a policy that takes ``--latency-ms`` per inference and holds still (so
episodes run to their time limit and chunks are replayed 8 of 16 or 8 of 32). ``--sim-ms`` adds
that much physics time to every env step, as a simulator like Isaac Sim spends (the built-in env
itself only draws). Rows:

- ``local``: the model in-process (the latency is its compute time);
- ``gr00t``: the GR00T reference server on loopback, its model taking the same time.

Synchronous querying waits for every inference; with ``prefetch_steps`` the envs that will need a
chunk within that many steps are queried in the background while the env keeps stepping.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from arena_adapters_gr00t.reference_policy import ReferencePolicy
from arena_adapters_gr00t.server import ReferenceServer

import arena_adapters as aa
from arena_adapters.envs.reach import ReachEnv


class SlowStill:
    """Holds every joint where it is, after ``latency_s`` of 'inference'."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        time.sleep(self.latency_s)
        joints = observation["policy"]["joint_pos"]
        gripper = torch.zeros(joints.shape[0], 1)
        return torch.cat([joints, gripper], -1).unsqueeze(1).repeat(1, 16, 1)


class SlowReferencePolicy(ReferencePolicy):
    """The GR00T reference test policy, taking ``latency_s`` per inference."""

    def __init__(self, latency_s: float) -> None:
        super().__init__()
        self.latency_s = latency_s

    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
        time.sleep(self.latency_s)
        return super().get_action(observation, options)


def steps_per_second(policy: aa.Policy, num_envs: int, steps: int, sim_s: float) -> float:
    env = ReachEnv(num_envs=num_envs, seed=0)
    with torch.inference_mode():
        obs, _ = env.reset()
        policy.reset()
        for _ in range(5):  # warm-up: connection, first chunks
            obs = env.step(policy.get_action(obs))[0]
        started = time.perf_counter()
        for _ in range(steps):
            actions = policy.get_action(obs)
            time.sleep(sim_s)
            obs, _, terminated, truncated, _ = env.step(actions)
            done = np.flatnonzero((terminated | truncated).cpu().numpy())
            if len(done):
                policy.reset(done)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=60.0)
    parser.add_argument("--sim-ms", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(1)
    latency = args.latency_ms / 1e3
    print(f"reach env, {args.num_envs} envs, +{args.sim_ms:g} ms physics per step, execute 8 actions per chunk, "
          f"inference {args.latency_ms:g} ms")
    print(f"{'adapter':<8} {'prefetch_steps':>14} {'steps/s':>9} {'speed-up':>9}")
    server = ReferenceServer(SlowReferencePolicy(latency), "127.0.0.1", 0, format="flat").start()
    try:
        rows = {
            "local": lambda prefetch: aa.load_policy(
                "local", policy=SlowStill(latency), execute_steps=8, prefetch_steps=prefetch),
            "gr00t": lambda prefetch: aa.load_policy(
                "gr00t", endpoint=server.endpoint, execute_steps=8, prefetch_steps=prefetch),
        }
        for name, make in rows.items():
            baseline = 0.0
            for prefetch in (0, 2, 4, 7):
                with make(prefetch) as policy:
                    rate = steps_per_second(policy, args.num_envs, args.steps, args.sim_ms / 1e3)
                baseline = baseline or rate
                label = f"{prefetch}" if prefetch else "0 (sync)"
                print(f"{name:<8} {label:>14} {rate:>9.1f} {rate / baseline:>8.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
