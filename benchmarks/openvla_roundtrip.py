"""Round trips to the OpenVLA reference server: ``load_policy("openvla")`` vs ``requests`` + ``json_numpy``.

The reference server (``arena-adapters serve openvla``, FastAPI + uvicorn, dummy policy) runs in a
separate process on loopback. Each request carries one 224x224x3 camera image, as OpenVLA clients
send it. Compared, per env request:

- upstream client: ``requests.post(url, json=payload)`` after ``json_numpy.patch()`` (deploy.py's
  docstring; a new connection per request), emulated without patching as ``requests.post(data=
  json_numpy.dumps(payload))`` plus ``json_numpy.loads``;
- the same with a keep-alive ``requests.Session``;
- our transport alone (``HttpTransport.infer``: codec + a keep-alive HTTP/1.1 connection);
- ``load_policy("openvla")`` end to end: observation translation from a (num_envs, 224, 224, 3)
  tensor, HTTP, action translation into the scheduler, for 1 and 8 envs (8 envs: one request per
  env, one after another with max_concurrency=1, and concurrently by default).

    python benchmarks/openvla_roundtrip.py [--steps 400] [--rounds 8] [--endpoint http://127.0.0.1:8000]

Prints wall milliseconds per env request and the client process's CPU milliseconds per env request
(the server runs in another process), each with its ratio to the upstream client.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import json_numpy
import numpy as np
import requests
import torch
from arena_adapters_openvla.transport import HttpTransport

import arena_adapters as aa

INSTRUCTION = "pick up the cup"


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "arena_adapters", "serve", "openvla", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if " on " not in line:
        process.kill()
        raise RuntimeError(f"the reference server did not start: {line!r}")
    return process, line.split(" on ")[1].split()[0]


def timed(function: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Wall and client-process CPU seconds per call, over ``calls`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        function()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="env requests timed per row (default 400)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds over the rows (default 8)")
    parser.add_argument("--endpoint", help="use this running OpenVLA server (e.g. a real deploy.py) instead of "
                        "starting the reference server")
    args = parser.parse_args()

    image = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
    payload = {"image": image, "instruction": INSTRUCTION}
    headers = {"Content-Type": "application/json"}
    process, endpoint = (None, args.endpoint) if args.endpoint else start_server()
    url = endpoint + "/act"
    try:
        def upstream_client() -> Any:
            return json_numpy.loads(requests.post(url, data=json_numpy.dumps(payload), headers=headers).text)

        session = requests.Session()

        def upstream_session() -> Any:
            return json_numpy.loads(session.post(url, data=json_numpy.dumps(payload), headers=headers).text)

        transport = HttpTransport(endpoint)

        def ours_transport() -> Any:
            return transport.infer([payload])

        expected = upstream_session()
        assert np.array_equal(ours_transport()[0], expected), "clients disagree on the action"

        def policy_step(num_envs: int, concurrency: int) -> tuple[Callable[[], Any], aa.Policy]:
            observation = {"camera_obs": {"external_camera_rgb": torch.from_numpy(np.stack([image] * num_envs))}}
            policy = aa.load_policy("openvla", endpoint=endpoint, instruction=INSTRUCTION, max_concurrency=concurrency)
            return (lambda: policy.get_action(observation)), policy

        one_env, policy_1 = policy_step(1, 1)
        eight_envs, policy_8 = policy_step(8, 1)
        eight_envs_2, policy_8c = policy_step(8, 16)
        assert torch.equal(one_env()[0], torch.tensor(expected, dtype=torch.float32))

        def upstream_eight_envs() -> Any:
            return [upstream_session() for _ in range(8)]

        rows = [
            ("requests.post + json_numpy (upstream)", upstream_client, 1),
            ("requests.Session + json_numpy", upstream_session, 1),
            ("HttpTransport.infer (ours)", ours_transport, 1),
            ("load_policy get_action, 1 env", one_env, 1),
            ("requests.Session + json_numpy, 8 envs", upstream_eight_envs, 8),
            ("load_policy, 8 envs, max_concurrency=1", eight_envs, 8),
            ("load_policy, 8 envs (default: concurrent)", eight_envs_2, 8),
        ]
        server = "the server" if args.endpoint else "the reference server"
        print(f"openvla round trips to {server} at {endpoint} (separate process, dummy policy), "
              f"224x224x3 image per request; {args.rounds} interleaved rounds, ~{args.steps} env requests per row")
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in rows}
        for function in (row[1] for row in rows):
            function()  # warm up connections and caches
        for _ in range(args.rounds):
            for name, function, envs in rows:
                calls = max(2, args.steps // args.rounds // envs)
                wall, cpu = timed(function, calls)
                samples[name].append((wall / envs, cpu / envs))
        print(f"{'client':<42}{'wall ms/env':>12}{'vs upstream':>13}{'client CPU ms/env':>19}{'vs upstream':>13}")
        base_wall = base_cpu = 0.0
        for name, _, _ in rows:
            wall = statistics.median(sample[0] for sample in samples[name]) * 1e3
            cpu = statistics.median(sample[1] for sample in samples[name]) * 1e3
            base_wall, base_cpu = base_wall or wall, base_cpu or cpu
            print(f"{name:<42}{wall:>12.2f}{base_wall / wall:>12.2f}x{cpu:>19.2f}{base_cpu / cpu:>12.2f}x")
        print("wall: median over rounds of the mean round trip per env request; client CPU: CPU time of this "
              "(client) process per env request, all threads; vs upstream = upstream's / this row's (higher is faster)")
        for policy in (policy_1, policy_8, policy_8c):
            policy.close()
        transport.close()
        session.close()
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
