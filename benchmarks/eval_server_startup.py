"""Start-up time of the demo's reference server process: from process start to the first reply.

    .venv/bin/python benchmarks/eval_server_startup.py [--adapters gr00t,openpi,openvla] [--repeats 3]
        [--policy expert|null]

Each run starts :meth:`ServerProcess.for_expert` exactly as ``arena-adapters demo`` does, waits for
its ``ENDPOINT`` line ("ready"), then loads the adapter with the served expert's client options and
times one ``get_action`` on a one-env ``reach`` observation ("first reply", counted from the
process start). Prints the medians, and beside them, from the same run, how long a process that
only imports torch takes: the servers imported it at start-up until f61f9f2, which cost each
about that much more.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from arena_adapters import load_policy
from arena_adapters.envs import make_environment
from arena_adapters.envs.expert_server import served_expert
from arena_adapters.evaluation.server_process import ServerProcess


def time_once(adapter: str, policy: str, observation: dict[str, object]) -> tuple[float, float]:
    """Seconds from process start to ready, and to the first reply."""
    started = time.perf_counter()
    with ServerProcess.for_expert(adapter, policy=policy) as server:
        ready = time.perf_counter() - started
        with load_policy(adapter, endpoint=server.endpoint, **served_expert(adapter).client_options) as loaded:
            loaded.get_action(observation)
        first = time.perf_counter() - started
    return ready, first


def torch_import_seconds() -> float:
    """Seconds for a fresh interpreter to import torch and exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", default="gr00t,openpi,openvla")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policy", default="expert", choices=("expert", "null"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    observation, _ = make_environment("reach", num_envs=1).reset()
    print(f"server process start-up ({args.policy}), median of {args.repeats}")
    print(f"{'adapter':>8} {'ready s':>8} {'first reply s':>14}  runs (first reply)")
    for adapter in args.adapters.split(","):
        runs = [time_once(adapter, args.policy, observation) for _ in range(args.repeats)]
        ready = statistics.median(run[0] for run in runs)
        first = statistics.median(run[1] for run in runs)
        print(f"{adapter:>8} {ready:>8.2f} {first:>14.2f}  {[round(run[1], 2) for run in runs]}")
    torch_import = statistics.median(torch_import_seconds() for _ in range(args.repeats))
    print(f"a process that only imports torch (what a server importing it adds): {torch_import:.2f} s")


if __name__ == "__main__":
    main()
