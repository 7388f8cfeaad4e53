"""``arena-adapters ping openpi``: check a live openpi server end to end.

Steps: ``GET /healthz``; connect and read the metadata frame; one synthetic observation of the
configured embodiment (DROID by default); the reply's ``actions`` shape; then a few more
inferences for the warm latency. Server faults are reported as failed steps, never raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from arena_adapters.errors import AdapterError
from arena_adapters.parts import ProbeReport, ProbeStep
from arena_adapters_openpi.observations import layout_of, synthetic_request
from arena_adapters_openpi.transport import WebsocketTransport


def probe_server(
    endpoint: str,
    timeout: float = 10.0,
    *,
    embodiment: str = "droid",
    api_key: str | None = None,
    prompt: str = "pick up the cup",
    action_dim: int | None = None,
    repeats: int = 3,
) -> ProbeReport:
    """Probe the openpi server(s) at ``endpoint`` and return the report (see the module docstring).

    Args:
        endpoint: ``ws://HOST:PORT`` (several comma-separated: all are probed by ``/healthz``; the
            inference goes to the first).
        timeout: seconds per step.
        embodiment: the synthetic observation's layout: ``droid``, ``libero`` or ``aloha``.
        api_key: sent as ``Authorization: Api-Key <key>``.
        prompt: the synthetic observation's prompt.
        action_dim: the expected action size (default: the embodiment's: 8, 7 or 14).
        repeats: extra inferences timed for the warm latency (0: none).
    """
    report = ProbeReport(endpoint=endpoint)
    try:
        layout = layout_of(embodiment)
        transport = WebsocketTransport(endpoint, timeout=timeout, connect_timeout=timeout, api_key=api_key,
                                       max_concurrency=1, reconnect_attempts=0)
    except AdapterError as exc:
        report.steps.append(ProbeStep("configuration", False, 0.0, str(exc)))
        return report
    expected_dim = action_dim or layout.action_dim
    request = synthetic_request(layout, prompt)
    try:
        health = transport.health()
        report.steps.append(ProbeStep("healthz", health.ok, health.latency_s, health.detail))
        metadata_step = _timed("metadata frame", lambda: _describe_metadata(transport))
        report.steps.append(metadata_step)
        if not metadata_step.ok:
            return report
        reply: dict[str, Any] = {}
        infer_step = _timed(f"infer ({layout.name})", lambda: _infer(transport, request, reply))
        report.steps.append(infer_step)
        if not infer_step.ok:
            return report
        report.steps.append(_check_reply(reply.get("reply"), expected_dim))
        if repeats > 0:
            report.steps.append(_warm_latency(transport, request, repeats))
    finally:
        transport.close()
    return report


def _timed(name: str, action: Callable[[], str]) -> ProbeStep:
    started = time.perf_counter()
    try:
        detail = action()
        return ProbeStep(name, True, time.perf_counter() - started, detail)
    except Exception as exc:
        return ProbeStep(name, False, time.perf_counter() - started, f"{type(exc).__name__}: {_first_line(exc)}")


def _describe_metadata(transport: WebsocketTransport) -> str:
    transport.connect()
    metadata = transport.metadata()
    text = repr(dict(metadata))
    return f"{len(metadata)} key(s): {text[:160]}{'...' if len(text) > 160 else ''}"


def _infer(transport: WebsocketTransport, request: dict[str, Any], out: dict[str, Any]) -> str:
    out["reply"] = transport.infer(request)
    keys = sorted(map(str, out["reply"])) if isinstance(out["reply"], dict) else type(out["reply"]).__name__
    return f"reply keys {keys}"


def _check_reply(reply: Any, expected_dim: int) -> ProbeStep:
    name = "reply actions shape"
    if not isinstance(reply, dict) or "actions" not in reply:
        return ProbeStep(name, False, 0.0, f"reply has no 'actions': {type(reply).__name__}")
    actions = reply["actions"]
    if not isinstance(actions, np.ndarray) or actions.ndim != 2 or actions.dtype.kind != "f":
        shape = getattr(actions, "shape", None)
        return ProbeStep(name, False, 0.0, f"expected float (H, D) actions, got {type(actions).__name__} {shape}")
    horizon, dim = actions.shape
    detail = f"{actions.dtype} (H={horizon}, D={dim})"
    if dim != expected_dim or horizon < 1:
        return ProbeStep(name, False, 0.0, f"{detail}; expected D={expected_dim}")
    return ProbeStep(name, True, 0.0, detail)


def _warm_latency(transport: WebsocketTransport, request: dict[str, Any], repeats: int) -> ProbeStep:
    latencies: list[float] = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            transport.infer(request)
            latencies.append(time.perf_counter() - started)
    except Exception as exc:
        return ProbeStep(f"infer x{repeats} (warm)", False, sum(latencies), _first_line(exc))
    mean = sum(latencies) / len(latencies)
    return ProbeStep(f"infer x{repeats} (warm)", True, mean,
                     f"mean {mean * 1e3:.2f} ms, min {min(latencies) * 1e3:.2f} ms, max {max(latencies) * 1e3:.2f} ms")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
