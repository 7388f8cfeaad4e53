"""The fuzz and fault matrices: what each adapter does with hostile replies and misbehaving servers.

Fuzz: every adapter's reference server answers one real inference; its reply bytes are then mutated
(random bytes, truncations, bit flips, byte runs overwritten with 0xff 0xff 0xff 0x7f, duplicated
runs) and fed to the adapter's transport decoder (``decode_reply``, exactly as a reply from the
network is decoded). Printed: inputs tried, outcomes by type, the worst time and the largest traced
allocation (tracemalloc) of one input.

Faults: the adapter's policy against its own reference server turned hostile through its
``fault_injector``: silent, trickling, closing the connection, garbage, a 200 MB reply, the server
stopped mid-request. Printed: the error type, the time it took against the timeout,
and the client's RSS growth.

    python benchmarks/robustness.py [--adapters gr00t,openpi,openvla] [--inputs 3000]
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from arena_adapters import AdapterError, load_policy
from arena_adapters.plugins import default_registry
from arena_adapters.policy import build_transports
from arena_adapters.records import ReferenceServerRecord, TransportRecord
from arena_adapters.testing.conformance import FaultSwitch, hostile_variants
from arena_adapters.transport import ReplyFault

TIMEOUT_S = 2.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(adapter: str, faults: FaultSwitch) -> Any:
    registry = default_registry()
    record = registry.adapter(adapter)
    assert record.reference_server
    server_record = registry.part(ReferenceServerRecord, record.reference_server)
    return server_record.factory(policy=None, host="127.0.0.1", port=0, fault_injector=faults)


def fuzz(adapter: str, inputs: int) -> None:
    registry = default_registry()
    record = registry.adapter(adapter)
    faults = FaultSwitch()
    server = start(adapter, faults)
    try:
        with load_policy(adapter, endpoint=server.endpoint, timeout=TIMEOUT_S) as policy:
            assert record.example_observation is not None
            policy.get_action(record.example_observation(2, "cpu"))
            reply = faults.last_reply
    finally:
        server.stop()
    transport_record = registry.part(TransportRecord, record.transport)
    transport = build_transports(transport_record, {"endpoint": server.endpoint}).transports[0]
    decode: Callable[[bytes], Any] = transport.decode_reply  # type: ignore[attr-defined]
    outcomes: collections.Counter[str] = collections.Counter()
    worst_s, worst_bytes = 0.0, 0
    for data in hostile_variants(reply, inputs, seed=1):
        tracemalloc.start()
        started = time.perf_counter()
        try:
            decode(data)
            outcome = "decoded"
        except AdapterError as error:
            outcome = type(error).__name__
        except Exception as error:  # counted, and the table says so: nothing else may come out
            outcome = f"UNTYPED {type(error).__name__}"
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        outcomes[outcome] += 1
        worst_s, worst_bytes = max(worst_s, elapsed), max(worst_bytes, peak)
    transport.close()
    shown = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
    print(f"| {adapter} | {inputs:,} mutations of a {len(reply):,} B reply | {shown} | {worst_s * 1e3:.1f} ms | "
          f"{worst_bytes / 2**20:.1f} MiB |")


FAULTS: dict[str, Callable[[bytes], ReplyFault | None]] = {
    "silent": lambda reply: ReplyFault("silence"),
    "trickling (1 B / 0.3 s)": lambda reply: ReplyFault("trickle", reply, interval_s=0.3),
    "closes the connection": lambda reply: ReplyFault("close"),
    "garbage": lambda reply: ReplyFault("replace", bytes(np.random.default_rng(0).integers(0, 256, 512,
                                                                                         dtype=np.uint8))),
    "a 200 MB reply": lambda reply: ReplyFault("replace", reply + b"\x00" * (200 * 2**20)),
}


def faults(adapter: str) -> None:
    record = default_registry().adapter(adapter)
    assert record.example_observation is not None
    observation = record.example_observation(2, "cpu")
    cases = [(name, _inject(make)) for name, make in FAULTS.items()]
    cases.append(("server stopped mid-request", _stop_soon))
    for name, arrange in cases:
        switch = FaultSwitch()
        server = start(adapter, switch)
        before = rss_mb()
        try:
            with load_policy(adapter, endpoint=server.endpoint, timeout=TIMEOUT_S, execute_steps=1) as policy:
                policy.get_action(observation)
                arrange(switch, server)
                started = time.perf_counter()
                try:
                    policy.get_action(observation)
                    outcome = "no error"
                except AdapterError as error:
                    outcome = type(error).__name__
                except Exception as error:
                    outcome = f"UNTYPED {type(error).__name__}"
                elapsed = time.perf_counter() - started
                switch.faults, switch.delay_s = [], 0.0
        finally:
            server.stop()
        print(f"| {adapter} | {name} | {outcome} | {elapsed:.2f} s (timeout {TIMEOUT_S:g} s) | "
              f"{rss_mb() - before:+.0f} MB |")


def _inject(make: Callable[[bytes], ReplyFault | None]) -> Callable[[FaultSwitch, Any], None]:
    def arrange(switch: FaultSwitch, server: Any) -> None:
        switch.faults.append(make(switch.last_reply))

    return arrange


def _stop_soon(switch: FaultSwitch, server: Any) -> None:
    switch.delay_s = 0.5  # the reply waits; the server stops meanwhile
    threading.Timer(0.2, server.stop).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", default="gr00t,openpi,openvla")
    parser.add_argument("--inputs", type=int, default=3000)
    args = parser.parse_args()
    adapters = args.adapters.split(",")
    print("| adapter | inputs | outcomes | worst time | worst traced allocation |\n|---|---|---|---|---|")
    for adapter in adapters:
        fuzz(adapter, args.inputs)
    print("\n| adapter | server | client saw | in | client RSS |\n|---|---|---|---|---|")
    for adapter in adapters:
        faults(adapter)


if __name__ == "__main__":
    main()
