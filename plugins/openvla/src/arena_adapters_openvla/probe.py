"""``arena-adapters ping openvla``: check a live OpenVLA / OFT server end to end.

Steps: the health check (``GET /openapi.json`` lists ``POST /act``), one synthetic observation of
the chosen variant, the shape of its reply, then a few more requests for the latency. Works against
the real upstream ``deploy.py`` servers as well as the reference server.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from arena_adapters.errors import AdapterError
from arena_adapters.parts import ProbeReport, ProbeStep
from arena_adapters_openvla.observations import VARIANTS
from arena_adapters_openvla.transport import HttpTransport

PROBE_INSTRUCTION = "pick up the cup"


def synthetic_payload(
    variant: str = "openvla",
    *,
    image_size: int = 224,
    instruction: str = PROBE_INSTRUCTION,
    unnorm_key: str | None = None,
    wrist_images: int = 1,
    state_dim: int = 8,
) -> dict[str, Any]:
    """A deterministic request payload of ``variant``: ramp images, a small ramp state."""
    image = (np.arange(image_size * image_size * 3) % 251).astype(np.uint8).reshape(image_size, image_size, 3)
    if variant == "openvla":
        payload: dict[str, Any] = {"image": image, "instruction": instruction}
        if unnorm_key is not None:
            payload["unnorm_key"] = unnorm_key
        return payload
    payload = {"full_image": image}
    for key in _wrist_keys(wrist_images):
        payload[key] = image
    if state_dim > 0:
        payload["state"] = np.linspace(-0.5, 0.5, state_dim, dtype=np.float64)
    payload["instruction"] = instruction
    return payload


def _wrist_keys(count: int) -> list[str]:
    if count == 1:
        return ["wrist_image"]
    if count == 2:
        return ["left_wrist_image", "right_wrist_image"]
    return [f"wrist_image_{index}" for index in range(count)]


def describe_reply(value: Any) -> str:
    """``float64 (7,)`` for an array, ``8 x float64 (7,)`` for a chunk list, else the type."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    if isinstance(value, list) and value and all(isinstance(item, np.ndarray) for item in value):
        shapes = {item.shape for item in value}
        shape = value[0].shape if len(shapes) == 1 else sorted(shapes)
        return f"{len(value)} x {value[0].dtype} {shape}"
    return type(value).__name__


def reply_shape_problem(reply: Any, variant: str, action_dim: int | None) -> str:
    """``""`` when ``reply`` has the shape ``variant``'s server sends, else what is wrong."""
    if variant == "openvla":
        rows = [reply] if isinstance(reply, np.ndarray) else None
        expected = "a bare float array (D,)"
    else:
        is_chunk = isinstance(reply, list) and bool(reply) and all(isinstance(row, np.ndarray) for row in reply)
        rows = reply if is_chunk else None
        expected = "a list of float arrays (D,), one per chunk step"
    if rows is None:
        return f"expected {expected}, got {describe_reply(reply)}"
    shapes = {row.shape for row in rows}
    if len(shapes) != 1 or len(rows[0].shape) != 1 or any(row.dtype.kind != "f" for row in rows):
        return f"expected {expected}, got {describe_reply(reply)}"
    width = rows[0].shape[0]
    if action_dim is not None and width != action_dim:
        return f"expected {action_dim} action components, got {width}"
    if not all(np.isfinite(row).all() for row in rows):
        return "the actions hold NaN or infinity"
    return ""


def probe_server(
    endpoint: str,
    timeout: float = 10.0,
    variant: str = "openvla",
    instruction: str = PROBE_INSTRUCTION,
    unnorm_key: str | None = None,
    image_size: int = 224,
    wrist_images: int = 1,
    state_dim: int = 8,
    action_dim: int | None = None,
    encoded: bool = False,
    api_key: str | None = None,
    repeats: int = 3,
) -> ProbeReport:
    """Probe the server at ``endpoint``; server faults are reported in the steps, never raised.

    Args:
        endpoint: ``http://HOST:PORT`` (comma-separated replicas are each health-checked).
        timeout: seconds per request.
        variant: ``"openvla"`` (image + instruction, one action) or ``"oft"`` (full image, wrist
            images, state, instruction; an action chunk).
        instruction, unnorm_key: sent with the synthetic observation (``unnorm_key`` for OpenVLA).
        image_size: side of the synthetic square images.
        wrist_images, state_dim: the OFT observation's wrist cameras and proprio width.
        action_dim: if set, the action width the reply must have.
        encoded: use the double-encoded ``{"encoded": ...}`` form.
        api_key: bearer key for servers behind an authenticating proxy.
        repeats: extra requests timed for the latency step (0 to skip it).
    """
    report = ProbeReport(endpoint=endpoint)
    if variant not in VARIANTS:
        detail = f"variant must be one of {list(VARIANTS)}, got {variant!r}"
        report.steps.append(ProbeStep("options", False, detail=detail))
        return report
    try:
        transport = HttpTransport(endpoint, timeout=timeout, encoded=encoded, api_key=api_key)
    except AdapterError as exc:
        report.steps.append(ProbeStep("options", False, detail=str(exc)))
        return report
    payload = synthetic_payload(
        variant,
        image_size=image_size,
        instruction=instruction,
        unnorm_key=unnorm_key,
        wrist_images=wrist_images,
        state_dim=state_dim,
    )
    with transport:
        health = transport.health()
        report.steps.append(ProbeStep("health GET /openapi.json", health.ok, health.latency_s, health.detail))
        if not health.ok:
            return report
        reply, step = _timed(f"act ({variant} observation)", lambda: transport.infer(payload))
        report.steps.append(step)
        if not step.ok:
            return report
        problem = reply_shape_problem(reply, variant, action_dim)
        report.steps.append(ProbeStep("reply shape", not problem, 0.0, problem or describe_reply(reply)))
        if problem or repeats < 1:
            return report
        report.steps.append(_latency_step(transport, payload, repeats))
    return report


def _timed(name: str, call: Callable[[], Any]) -> tuple[Any, ProbeStep]:
    started = time.perf_counter()
    try:
        value = call()
    except Exception as exc:
        return None, ProbeStep(name, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    return value, ProbeStep(name, True, latency, describe_reply(value))


def _latency_step(transport: HttpTransport, payload: dict[str, Any], repeats: int) -> ProbeStep:
    latencies = []
    for _ in range(repeats):
        _, step = _timed("latency", lambda: transport.infer(payload))
        if not step.ok:
            return ProbeStep(f"latency x{repeats}", False, step.latency_s, step.detail)
        latencies.append(step.latency_s)
    mean = statistics.fmean(latencies)
    detail = f"per step: mean {mean * 1e3:.2f} ms, min {min(latencies) * 1e3:.2f} ms, max {max(latencies) * 1e3:.2f} ms"
    return ProbeStep(f"latency x{repeats}", True, mean, detail)
