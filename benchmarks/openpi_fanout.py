"""One 16-env query against openpi servers with 20 ms of simulated inference per request:
our concurrent fan-out vs one env after another.

An openpi server takes one observation per request. The upstream server runs ``policy.infer`` on
its event loop, so ONE upstream-style server serves its connections one at a time: concurrency pays
off across server replicas, or with a server that runs inference off its loop. Scenarios:

- ``1 server, faithful``: our reference server as upstream behaves (inference on the event loop);
- ``1 server, infer_in_thread``: the same server with a 16-thread inference pool;
- ``4 replicas`` / ``16 replicas``: faithful servers, envs spread over one transport per endpoint
  (contiguous env groups in parallel, as the core's replica routing in ``Policy`` does).

For each: wall time of one multi-env query (16 DROID observations, 224x224 images) with our
transport (``max_concurrency=16``), with our transport one after another (``max_concurrency=1``),
and with openpi-client's ``WebsocketClientPolicy`` in a loop (the upstream way; one server only).
The last row times a full ``Policy.get_action`` (translation from Isaac Lab tensors included).

The servers run in this process (background threads). Even with perfect overlap a query costs the
20 ms inference plus the time to move 16 x 301 KB through Python websockets on both ends (about
8 ms on a 2-core VM with no inference delay; the same with the server in its own process).

    python benchmarks/openpi_fanout.py [--queries 10] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

from arena_adapters_openpi.observations import layout_of, synthetic_request
from arena_adapters_openpi.server import ReferenceServer, start_server
from arena_adapters_openpi.transport import WebsocketTransport
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from arena_adapters import load_policy
from arena_adapters.examples import droid_observation
from arena_adapters.transport import DaemonPool, Deadline, fan_out

NUM_ENVS = 16


def timed_ms(query: Callable[[], Any], queries: int) -> tuple[float, float]:
    """Median and max wall time of ``queries`` calls after two warm-up calls, in ms."""
    query()
    query()
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        query()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples), max(samples)


Query = tuple[Callable[[], Any], Callable[[], None]]


def ours(endpoints: list[str], concurrency: int, requests: list[dict[str, Any]]) -> Query:
    """One transport per replica endpoint; each takes a contiguous group of the envs."""
    transports = [WebsocketTransport(e, timeout=30.0, max_concurrency=concurrency) for e in endpoints]
    if len(transports) == 1:
        return (lambda: transports[0].infer(requests)), transports[0].close
    size = -(-len(requests) // len(transports))
    groups = [requests[i * size:(i + 1) * size] for i in range(len(transports))]
    threads = DaemonPool(len(transports), "bench-replicas")

    def query() -> Any:
        calls = [lambda t=t, g=g: t.infer(g) for t, g in zip(transports, groups, strict=True)]
        return fan_out(threads, calls, Deadline.after(30.0), "benchmark query")

    def close() -> None:
        threads.close()
        for transport in transports:
            transport.close()

    return query, close


def upstream_loop(endpoint: str, requests: list[dict[str, Any]]) -> Query:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = WebsocketClientPolicy(endpoint)
    return (lambda: [client.infer(r) for r in requests]), lambda: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=10, help="timed 16-env queries per row (default 10)")
    parser.add_argument("--delay", type=float, default=0.02, help="simulated inference seconds (default 0.02)")
    args = parser.parse_args()
    requests = [synthetic_request(layout_of("droid"), "pick up the cup") for _ in range(NUM_ENVS)]

    def servers(count: int, **options: Any) -> list[ReferenceServer]:
        return [start_server(port=0, delay=args.delay, **options) for _ in range(count)]

    scenarios: list[tuple[str, list[ReferenceServer]]] = [
        ("1 server, faithful", servers(1)),
        ("1 server, infer_in_thread", servers(1, infer_in_thread=True, workers=NUM_ENVS)),
        ("4 replicas, faithful", servers(4)),
        ("16 replicas, faithful", servers(16)),
    ]
    print(f"one {NUM_ENVS}-env query, {args.delay * 1e3:g} ms simulated inference per request; "
          f"median (max) of {args.queries} queries, ms")
    print(f"{'server(s)':<28}{'ours concurrent':>18}{'ours one-by-one':>18}{'upstream loop':>16}{'speed-up':>10}")
    try:
        for name, group in scenarios:
            endpoints = [s.endpoint for s in group]
            cells: dict[str, tuple[float, float]] = {}
            for label, (query, close) in (
                ("concurrent", ours(endpoints, NUM_ENVS, requests)),
                ("sequential", ours(endpoints, 1, requests)),
            ):
                cells[label] = timed_ms(query, args.queries)
                close()
            upstream = "-"
            if len(group) == 1:
                query, _ = upstream_loop(group[0].endpoint, requests)
                median, worst = timed_ms(query, args.queries)
                upstream = f"{median:.1f} ({worst:.0f})"
            concurrent, sequential = cells["concurrent"], cells["sequential"]
            print(f"{name:<28}{f'{concurrent[0]:.1f} ({concurrent[1]:.0f})':>18}"
                  f"{f'{sequential[0]:.1f} ({sequential[1]:.0f})':>18}{upstream:>16}"
                  f"{sequential[0] / concurrent[0]:>9.1f}x")
        threaded = scenarios[1][1][0]
        observation = droid_observation(NUM_ENVS, height=180, width=320)
        for label, concurrency in (("concurrent", NUM_ENVS), ("one-by-one", 1)):
            policy = load_policy("openpi", endpoint=threaded.endpoint, max_concurrency=concurrency, execute_steps=1)
            median, worst = timed_ms(lambda p=policy: p.get_action(observation), args.queries)
            policy.close()
            print(f"  Policy.get_action, {NUM_ENVS} envs 180x320 cameras, infer_in_thread server, {label}: "
                  f"{median:.1f} ({worst:.0f}) ms")
    finally:
        for _, group in scenarios:
            for server in group:
                server.stop()


if __name__ == "__main__":
    main()
