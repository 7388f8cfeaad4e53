"""``arena-adapters ping openpi``: check a live openpi server end to end.

Steps: ``GET /healthz``; connect and read the metadata frame; one synthetic observation of the
configured embodiment (DROID by default); the reply's ``actions`` shape; then a few more
inferences for the warm latency. Server faults are reported as failed steps, never raised
(:class:`~arena_adapters.probing.ProbeRun`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arena_adapters.errors import AdapterError
from arena_adapters.parts import ProbeReport
from arena_adapters.probing import ProbeRun, StepFailed
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
    ca_file: str | None = None,
    verify_tls: bool = True,
) -> ProbeReport:
    """Probe the openpi server at ``endpoint`` and return the report (see the module docstring).

    Args:
        endpoint: ``ws://HOST:PORT`` or ``wss://HOST:PORT``.
        timeout: seconds per step.
        embodiment: the synthetic observation's layout: ``droid``, ``libero`` or ``aloha``.
        api_key: sent as ``Authorization: Api-Key <key>``.
        prompt: the synthetic observation's prompt.
        action_dim: the expected action size (default: the embodiment's: 8, 7 or 14).
        repeats: extra inferences timed for the warm latency (0: none).
        ca_file, verify_tls: how a ``wss://`` server's certificate is checked.
    """
    run = ProbeRun(endpoint)
    try:
        layout = layout_of(embodiment)
        transport = WebsocketTransport(endpoint, timeout=timeout, connect_timeout=timeout, api_key=api_key,
                                       max_concurrency=1, retry_attempts=0, ca_file=ca_file, verify_tls=verify_tls)
    except AdapterError as exc:
        run.fail("configuration", str(exc))
        return run.report
    expected_dim = action_dim or layout.action_dim
    request = synthetic_request(layout, prompt)
    with transport:
        run.step("healthz", lambda: _healthz(transport))
        ok, _ = run.step("metadata frame", lambda: _describe_metadata(transport))
        if not ok:
            return run.report
        ok, reply = run.step(f"infer ({layout.name})", lambda: _infer(transport, request))
        if not ok:
            return run.report
        ok, _ = run.step("reply actions shape", lambda: _check_reply(reply, expected_dim))
        if ok and repeats > 0:
            run.latency(f"infer x{repeats} (warm)", lambda: transport.infer(request), repeats)
    return run.report


def _healthz(transport: WebsocketTransport) -> tuple[str, None]:
    health = transport.health()
    if not health.ok:
        raise StepFailed(health.detail)
    return health.detail, None


def _describe_metadata(transport: WebsocketTransport) -> tuple[str, None]:
    transport.connect()
    metadata = transport.metadata()
    text = repr(dict(metadata))
    return f"{len(metadata)} key(s): {text[:160]}{'...' if len(text) > 160 else ''}", None


def _infer(transport: WebsocketTransport, request: dict[str, Any]) -> tuple[str, Any]:
    reply = transport.infer(request)
    keys = sorted(map(str, reply)) if isinstance(reply, dict) else type(reply).__name__
    return f"reply keys {keys}", reply


def _check_reply(reply: Any, expected_dim: int) -> tuple[str, None]:
    if not isinstance(reply, dict) or "actions" not in reply:
        raise StepFailed(f"reply has no 'actions': {type(reply).__name__}")
    actions = reply["actions"]
    if not isinstance(actions, np.ndarray) or actions.ndim != 2 or actions.dtype.kind != "f":
        shape = getattr(actions, "shape", None)
        raise StepFailed(f"expected float (H, D) actions, got {type(actions).__name__} {shape}")
    horizon, dim = actions.shape
    detail = f"{actions.dtype} (H={horizon}, D={dim})"
    if dim != expected_dim or horizon < 1:
        raise StepFailed(f"{detail}; expected D={expected_dim}")
    return detail, None
