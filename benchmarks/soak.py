"""Soak: many control steps against each reference server, killed and restarted on a schedule.

For every adapter: the plugin's reference server runs in its own process (``arena-adapters serve``);
the client steps ``load_policy(NAME).get_action`` on the adapter's example observation; every
``--kill-every`` steps the server is killed (SIGKILL) and started again on the same port. Printed
per adapter: steps completed, errors by type, recovery time after each restart (first successful
step after the server is back), and the client's RSS, threads and open fds at warm-up and at the
end, with the growth (and RSS at each recovery, to tell a plateau from a leak). Targets: RSS growth
< 10 MB after warm-up, threads and fds flat.

    python benchmarks/soak.py                       # 100,000 steps per adapter, a kill every 10,000
    python benchmarks/soak.py --steps 20000 --adapters gr00t
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from arena_adapters import AdapterError, load_policy
from arena_adapters.plugins import default_registry
from arena_adapters.transport import parse_endpoint

SERVER_START_TIMEOUT_S = 60.0


@dataclass
class Usage:
    rss_mb: float
    threads: int
    fds: int

    @staticmethod
    def now() -> Usage:
        rss_kb = 0
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
        return Usage(rss_kb / 1024, threading.active_count(), len(os.listdir("/proc/self/fd")))


@dataclass
class SoakResult:
    adapter: str
    steps: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    recoveries_s: list[float] = field(default_factory=list)
    rss_after_restarts_mb: list[float] = field(default_factory=list)
    latencies_kept: int = 0
    warm: Usage | None = None
    end: Usage | None = None
    wall_s: float = 0.0


class Server:
    """``arena-adapters serve NAME --port PORT`` in a process of its own."""

    def __init__(self, adapter: str, port: int, endpoint: str) -> None:
        self.adapter = adapter
        self.port = port
        self.endpoint = endpoint
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "arena_adapters", "serve", self.adapter, "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.adapter} server exited with {self.process.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"{self.adapter} server did not listen within {SERVER_START_TIMEOUT_S} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoint_for(adapter: str, port: int) -> str:
    scheme = {"gr00t": "tcp", "openpi": "ws", "openvla": "http"}.get(adapter, "tcp")
    return parse_endpoint(f"{scheme}://127.0.0.1:{port}", schemes=(scheme,)).url


def soak(adapter: str, steps: int, kill_every: int, num_envs: int, timeout: float) -> SoakResult:
    record = default_registry().adapter(adapter)
    assert record.example_observation is not None, f"{adapter} has no example observation"
    observation = record.example_observation(num_envs, "cpu")
    port = free_port()
    server = Server(adapter, port, endpoint_for(adapter, port))
    result = SoakResult(adapter)
    server.start()
    started = time.perf_counter()
    restarted_at: float | None = None
    try:
        with load_policy(adapter, endpoint=server.endpoint, timeout=timeout, num_envs=num_envs) as policy:
            for step in range(1, steps + 1):
                try:
                    policy.get_action(observation)
                    result.steps += 1
                    if restarted_at is not None:
                        result.recoveries_s.append(time.perf_counter() - restarted_at)
                        result.rss_after_restarts_mb.append(Usage.now().rss_mb)
                        restarted_at = None
                except AdapterError as error:
                    result.errors[type(error).__name__] += 1
                    policy.reset()  # drop what the failed step left behind; the next step queries again
                if step == min(kill_every // 2, 2000):
                    result.warm = Usage.now()
                if step % kill_every == 0 and step < steps:
                    server.kill()
                    server.start()
                    restarted_at = time.perf_counter()
                    policy.reset()
            result.latencies_kept = len(policy.stats.latencies_s)
            result.end = Usage.now()
    finally:
        server.kill()
    result.wall_s = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", default="gr00t,openpi,openvla")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--kill-every", type=int, default=10_000)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the client's own image resizes; the server processes have theirs
    results = []
    for adapter in args.adapters.split(","):
        result = soak(adapter, args.steps, args.kill_every, args.num_envs, args.timeout)
        results.append(result)
        print_result(result)
    failed = [r.adapter for r in results if r.warm and r.end and r.end.rss_mb - r.warm.rss_mb >= 10]
    print(f"\nRSS growth >= 10 MB after warm-up: {failed or 'none'}")
    return 1 if failed else 0


def print_result(result: SoakResult) -> None:
    warm, end = result.warm, result.end
    recoveries: Any = (f"median {statistics.median(result.recoveries_s):.2f} s, max {max(result.recoveries_s):.2f} s "
                       f"over {len(result.recoveries_s)}") if result.recoveries_s else "none"
    print(f"\n== {result.adapter}: {result.steps:,} steps ok in {result.wall_s:.1f} s")
    print(f"   errors by type: {dict(result.errors) or 'none'}")
    print(f"   recovery after restart: {recoveries}")
    print(f"   latency samples kept: {result.latencies_kept:,}")
    if warm and end:
        print(f"   RSS {warm.rss_mb:.1f} -> {end.rss_mb:.1f} MB ({end.rss_mb - warm.rss_mb:+.1f}); "
              f"threads {warm.threads} -> {end.threads}; fds {warm.fds} -> {end.fds}")
    if result.rss_after_restarts_mb:
        print(f"   RSS after each restart: {', '.join(f'{mb:.1f}' for mb in result.rss_after_restarts_mb)} MB")


if __name__ == "__main__":
    raise SystemExit(main())
