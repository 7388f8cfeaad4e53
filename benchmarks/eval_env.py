"""Step throughput of the built-in ``reach`` environment (rendering both cameras every step).

    .venv/bin/python benchmarks/eval_env.py [--sizes 16,256,4096] [--image 180x320] [--threads 1] [--device cpu]

Random actions (so episodes end and envs reset inside ``step``); prints ms per vectorized step and
env steps per second for each size.
"""

from __future__ import annotations

import argparse
import time

import torch

from arena_adapters.envs.reach import ACTION_DIM, JOINT_LIMIT, ReachEnv


def measure(num_envs: int, height: int, width: int, device: str, min_time_s: float) -> tuple[float, int]:
    """Seconds per step and the number of timed steps."""
    env = ReachEnv(num_envs=num_envs, device=device, image_height=height, image_width=width, seed=0)
    env.reset()
    generator = torch.Generator(device=device).manual_seed(0)

    def actions() -> torch.Tensor:
        sample = torch.rand(num_envs, ACTION_DIM, generator=generator, device=device)
        sample[:, :7] = (2 * sample[:, :7] - 1) * JOINT_LIMIT
        return sample

    for _ in range(3):
        env.step(actions())
    steps, started = 0, time.perf_counter()
    while steps < 5 or time.perf_counter() - started < min_time_s:
        env.step(actions())
        steps += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16,256,4096", help="comma-separated num_envs")
    parser.add_argument("--image", default="180x320", help="camera HxW (default 180x320, DROID)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds to time each size (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.image.lower().split("x"))
    print(f"reach env, two {height}x{width} cameras, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'num_envs':>9} {'ms/step':>10} {'env steps/s':>12} {'steps timed':>12}")
    for num_envs in (int(v) for v in args.sizes.split(",")):
        seconds, steps = measure(num_envs, height, width, args.device, args.min_time)
        print(f"{num_envs:>9} {seconds * 1e3:>10.2f} {num_envs / seconds:>12.0f} {steps:>12}")


if __name__ == "__main__":
    main()
