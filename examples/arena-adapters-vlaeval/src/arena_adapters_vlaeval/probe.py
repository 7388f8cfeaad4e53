"""``arena-adapters ping vlaeval``: HELLO, one episode with one synthetic observation, the reply's
shape, latency."""

from __future__ import annotations

from typing import Any

import numpy as np

from arena_adapters import plugin as ap
from arena_adapters_vlaeval.transport import VlaEvalTransport


def synthetic_message(env_id: int = 0, size: tuple[int, int] = (224, 224)) -> dict[str, Any]:
    """One env's message as the observation translator makes it, with zero images and state."""
    return {
        "env_id": env_id,
        "task": {"name": "arena-adapters-probe", "description": ""},
        "observation": {
            "images": {key: np.zeros((*size, 3), np.uint8) for key in ("exterior_image_1_left", "wrist_image_left")},
            "state": np.zeros(8, np.float32),
            "task_description": "",
        },
    }


def probe_server(endpoint: str, timeout: float = 10.0, *, repeats: int = 3,
                 image_format: str = "raw") -> ap.ProbeReport:
    """Probe a vla-eval model server; its faults are failed steps, never exceptions."""
    run = ap.ProbeRun(endpoint)
    try:
        transport = VlaEvalTransport(endpoint, timeout=timeout, image_format=image_format,  # type: ignore[arg-type]
                                     retry_attempts=0)
    except ap.AdapterError as error:
        run.fail("configuration", str(error))
        return run.report
    with transport:
        if not run.step("hello", lambda: _hello(transport))[0]:
            return run.report
        request = [synthetic_message()]
        ok, replies = run.step("inference", lambda: ("EPISODE_START + one synthetic observation",
                                                     transport.infer(request)))
        if ok:
            run.step("reply shape", lambda: _shape(replies))
            if repeats:
                run.latency(f"latency x{repeats}", lambda: transport.infer(request), repeats)
        run.step("episode end", lambda: _end(transport))
    return run.report


def _hello(transport: VlaEvalTransport) -> tuple[str, None]:
    info = transport.metadata()
    name = info.get("model_server", "?")
    spec = info.get("action_spec")
    extra = f", action_spec {sorted(spec)}" if isinstance(spec, dict) else ""
    return (f"{transport.url}: model_server {name}, protocol_version {info.get('protocol_version')}, "
            f"harness {info.get('harness_version')}{extra}"), None


def _shape(replies: Any) -> tuple[str, None]:
    actions = replies[0].get("actions") if isinstance(replies, list) and replies and isinstance(replies[0], dict) \
        else None
    if not isinstance(actions, np.ndarray) or actions.ndim not in (1, 2):
        raise ap.StepFailed(f"expected 'actions' (D,) or (H, D), got {ap.describe(replies)}")
    return f"actions {list(actions.shape)} {actions.dtype}", None


def _end(transport: VlaEvalTransport) -> tuple[str, None]:
    transport.reset(None)
    return "EPISODE_END sent", None
