"""``arena-adapters ping openvla``: check a live OpenVLA / OFT server end to end.

Steps: the health check (``GET /openapi.json`` lists ``POST /act``), one synthetic observation of
the chosen variant, the shape of its reply, then a few more requests for the latency. Works against
the real upstream ``deploy.py`` servers as well as the reference server.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arena_adapters.errors import AdapterError
from arena_adapters.parts import ProbeReport
from arena_adapters.probing import ProbeRun, StepFailed
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
    ca_file: str | None = None,
    verify: bool = True,
    repeats: int = 3,
) -> ProbeReport:
    """Probe the server at ``endpoint``; server faults are reported in the steps, never raised.

    Args:
        endpoint: ``http(s)://HOST:PORT`` of one server.
        timeout: seconds per request.
        variant: ``"openvla"`` (image + instruction, one action) or ``"oft"`` (full image, wrist
            images, state, instruction; an action chunk).
        instruction, unnorm_key: sent with the synthetic observation (``unnorm_key`` for OpenVLA).
        image_size: side of the synthetic square images.
        wrist_images, state_dim: the OFT observation's wrist cameras and proprio width.
        action_dim: if set, the action width the reply must have.
        encoded: use the double-encoded ``{"encoded": ...}`` form.
        api_key: bearer token for servers that require one.
        ca_file, verify: TLS settings of ``https`` endpoints.
        repeats: extra requests timed for the latency step (0 to skip it).
    """
    run = ProbeRun(endpoint)
    if variant not in VARIANTS:
        run.fail("options", f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        return run.report
    try:
        transport = HttpTransport(endpoint, timeout=timeout, encoded=encoded, api_key=api_key, ca_file=ca_file,
                                  verify=verify)
    except AdapterError as exc:
        run.fail("options", str(exc))
        return run.report
    payload = synthetic_payload(
        variant,
        image_size=image_size,
        instruction=instruction,
        unnorm_key=unnorm_key,
        wrist_images=wrist_images,
        state_dim=state_dim,
    )

    def health() -> tuple[str, None]:
        status = transport.health()
        if not status.ok:
            raise StepFailed(status.detail)
        return status.detail, None

    def act() -> tuple[str, Any]:
        reply = transport.infer(payload)
        return describe_reply(reply), reply

    def shape() -> tuple[str, None]:
        problem = reply_shape_problem(reply, variant, action_dim)
        if problem:
            raise StepFailed(problem)
        return describe_reply(reply), None

    with transport:
        if not run.step("health GET /openapi.json", health)[0]:
            return run.report
        passed, reply = run.step(f"act ({variant} observation)", act)
        if not passed or not run.step("reply shape", shape)[0] or repeats < 1:
            return run.report
        run.latency(f"latency x{repeats}", lambda: transport.infer(payload), repeats)
    return run.report
