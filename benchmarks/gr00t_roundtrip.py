"""Round trips to a GR00T reference server: ``load_policy("gr00t")`` vs a raw REQ-socket client.

The server (the built-in DROID test policy, flat format) runs in a separate process on loopback. Each
step sends one batched request for B envs (B=1 and B=16) with two 180x320x3 cameras:

- ``raw REQ, upstream codec``: a bare pyzmq REQ socket doing only the upstream serializer's work
  (np.save + msgpack, msgpack + np.load) on ready-made numpy arrays: the floor upstream's client sets;
- ``raw REQ, our codec``: the same socket with our codec;
- ``load_policy("gr00t")``: the whole adapter per control step with ``execute_steps=1`` (every step
  queries): Isaac Lab tensors -> DROID translator -> transport (timeouts, error mapping) -> action
  translator -> scheduler -> (B, 8) actions. The camera tensors are already 180x320, so no resize.

    python benchmarks/gr00t_roundtrip.py [--steps 300] [--torch-threads 1]

``--torch-threads`` (default 1): on a small shared VM, torch's intra-op thread pool can make each tiny
CPU op (the scheduler's scatter of a (16, 32, 8) chunk) wait a whole scheduler time slice (~8 ms)
for a busy second core; on the GPU this path does not exist. Pass 0 to keep torch's default.

Prints mean and p50 milliseconds per round trip (the clients take turns, call by call, so background
load affects them alike) and raw-upstream / this client.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import zmq
from arena_adapters_gr00t.codec import decode, encode
from arena_adapters_gr00t.transport import Gr00tTransport
from gr00t_upstream import upstream_decode, upstream_encode

import arena_adapters as aa

SERVE = "import sys; from arena_adapters.cli import main; sys.exit(main())"






def isaac_observation(batch: int) -> dict[str, Any]:
    image = (torch.arange(batch * 180 * 320 * 3) % 251).to(torch.uint8).reshape(batch, 180, 320, 3)
    return {
        "camera_obs": {"external_camera_rgb": image, "wrist_camera_rgb": image.flip(1).contiguous()},
        "policy": {"joint_pos": torch.linspace(-1, 1, batch * 7).reshape(batch, 7),
                   "gripper_pos": torch.full((batch, 1), 0.5)},
    }


def wire_request(batch: int) -> dict[str, Any]:
    observation = isaac_observation(batch)
    flat = {
        "video.exterior_image_1_left": observation["camera_obs"]["external_camera_rgb"].numpy()[:, None],
        "video.wrist_image_left": observation["camera_obs"]["wrist_camera_rgb"].numpy()[:, None],
        "state.joint_position": observation["policy"]["joint_pos"].numpy()[:, None],
        "state.gripper_position": observation["policy"]["gripper_pos"].numpy()[:, None],
        "annotation.language.language_instruction": ["pick up the cup"] * batch,
    }
    return {"endpoint": "get_action", "data": {"observation": flat, "options": None}}


def time_interleaved(steps: dict[str, Callable[[], Any]], count: int) -> dict[str, list[float]]:
    """Milliseconds per call of each step, run round-robin so background load hits all alike."""
    for step in steps.values():
        for _ in range(5):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            samples[name].append((time.perf_counter() - started) * 1e3)
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="timed round trips per row at B=1 (default 300)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads (0: torch default)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "gr00t", "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and endpoint in server.stdout.readline()
        context = zmq.Context()
        raw = context.socket(zmq.REQ)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(endpoint)

        def raw_step(request: dict[str, Any], enc: Callable[[Any], bytes], dec: Callable[[bytes], Any]) -> Any:
            raw.send(enc(request))
            action, _ = dec(raw.recv())
            return np.concatenate([action["action.joint_position"], action["action.gripper_position"]], -1)

        print("GR00T round trips to the reference server (separate process, loopback), flat DROID, 180x320 cameras; "
              f"torch threads {torch.get_num_threads()}")
        print(f"{'B':>3} {'client':<34}{'mean (ms)':>11}{'p50 (ms)':>10}{'raw upstream/this':>19}")
        for batch in (1, 16):
            steps = max(30, args.steps // batch)
            request = wire_request(batch)
            observation = isaac_observation(batch)
            policy = aa.load_policy("gr00t", endpoint=endpoint, execute_steps=1, timeout=10)
            transport = Gr00tTransport(endpoint, timeout=10)
            flat = request["data"]["observation"]
            expected = raw_step(request, encode, decode)
            actions = policy.get_action(observation).numpy()
            assert np.array_equal(actions, expected[:, 0]), "adapter and raw client disagree"
            rows = {
                "raw REQ, upstream codec": lambda r=request: raw_step(r, upstream_encode, upstream_decode),
                "raw REQ, our codec": lambda r=request: raw_step(r, encode, decode),
                "Gr00tTransport.infer (our codec)": lambda f=flat, t=transport: t.infer(f),
                'load_policy("gr00t").get_action': lambda o=observation, p=policy: p.get_action(o),
            }
            samples = time_interleaved(rows, steps)
            baseline = statistics.fmean(samples["raw REQ, upstream codec"])
            for name, times in samples.items():
                mean, p50 = statistics.fmean(times), statistics.median(times)
                print(f"{batch:>3} {name:<34}{mean:>11.3f}{p50:>10.3f}{baseline / mean:>18.2f}x")
            policy.close()
            transport.close()
        raw.close(linger=0)
        context.term()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
