"""CPU per request of the OpenVLA reference server: ``POST /act`` below uvicorn's ASGI layer
(``ActProtocol``, the default) vs through it (``below_asgi=False``, as upstream's requests go).

Two reference servers (null OFT policy) run in processes of their own on loopback; ``--threads``
``http.client`` keep-alive connections send each the same request, an OFT observation with two
224x224x3 images (401,736 bytes, what the openvla adapter sends per env). The sides alternate
round by round; each round reads the server process's CPU time (user + system, from
``/proc/PID/stat``: Linux only) before and after ``--requests`` requests per thread.

    python benchmarks/openvla_server_cpu.py [--rounds 3] [--threads 8] [--requests 250]

Prints milliseconds of server CPU and of wall time per request, per round and the medians, and
the ratio ASGI / below ASGI.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from arena_adapters_openvla import codec

SERVER = """
import sys
from arena_adapters_openvla.server import start_reference_server
server = start_reference_server(policy="null", variant="oft", port=0, below_asgi=sys.argv[1] == "1")
print(server.port, flush=True)
server.wait()
"""
SIDES = {"below ASGI": "1", "through ASGI": "0"}


def request_body() -> bytes:
    """The OFT observation of one env, as the adapter's codec writes it."""
    rng = np.random.default_rng(0)
    return codec.encode({
        "full_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "state": rng.random(8),
        "instruction": "reach the target",
    })


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, body: bytes, threads: int, requests: int) -> None:
    """``threads`` keep-alive connections, ``requests`` requests each; every reply read whole."""
    failures: list[BaseException] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for _ in range(requests):
                connection.request("POST", "/act", body=body, headers={"Content-Type": "application/json"})
                reply = connection.getresponse()
                data = reply.read()
                if reply.status != 200 or not data.startswith(b"["):
                    raise RuntimeError(f"unexpected reply {reply.status}: {data[:80]!r}")
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="per thread and round")
    args = parser.parse_args()
    body = request_body()
    servers = {side: subprocess.Popen([sys.executable, "-c", SERVER, flag], stdout=subprocess.PIPE, text=True)
               for side, flag in SIDES.items()}
    try:
        ports = {side: int(process.stdout.readline()) for side, process in servers.items()}  # type: ignore[union-attr]
        for side in SIDES:
            load(ports[side], body, args.threads, 10)  # warm-up
        per_request: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
        count = args.threads * args.requests
        print(f"{count} requests of {len(body):,} bytes per side and round, {args.threads} connections")
        for round_index in range(args.rounds):
            order = list(SIDES) if round_index % 2 == 0 else list(SIDES)[::-1]
            for side in order:
                pid = servers[side].pid
                cpu, wall = cpu_seconds(pid), time.perf_counter()
                load(ports[side], body, args.threads, args.requests)
                cpu_ms = (cpu_seconds(pid) - cpu) / count * 1e3
                wall_ms = (time.perf_counter() - wall) / count * 1e3
                per_request[side].append((cpu_ms, wall_ms))
                print(f"round {round_index + 1}, {side:12s}: server CPU {cpu_ms:.3f} ms/request, "
                      f"wall {wall_ms:.3f} ms/request")
        medians = {side: (statistics.median(c for c, _ in rows), statistics.median(w for _, w in rows))
                   for side, rows in per_request.items()}
        for side, (cpu_ms, wall_ms) in medians.items():
            print(f"median {side:12s}: server CPU {cpu_ms:.3f} ms/request, wall {wall_ms:.3f} ms/request")
        below, through = medians["below ASGI"], medians["through ASGI"]
        print(f"ratio through ASGI / below ASGI: server CPU {through[0] / below[0]:.2f}x, "
              f"wall {through[1] / below[1]:.2f}x")
    finally:
        for process in servers.values():
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
