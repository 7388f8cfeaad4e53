"""``arena-adapters ping gr00t``: check a live GR00T server (ours or upstream's) end to end.

Steps (on :class:`~arena_adapters.probing.ProbeRun`): ``ping``; ``get_modality_config``; one
synthetic observation built from what the server describes (or from the configured embodiment when
it describes nothing) sent to ``get_action``; a check of the reply's keys and shapes; then a few
more ``get_action`` calls for latency figures. With ``format="auto"`` the flat observation is sent
first and the nested one next, when the server refuses the first or when the first one's reply
has the wrong keys or shapes (a permissive server may take either). Server faults are reported as
failed steps, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from arena_adapters.errors import ConfigError, ServerError
from arena_adapters.options import Option
from arena_adapters.parts import ProbeReport
from arena_adapters.probing import ProbeRun, StepFailed
from arena_adapters_gr00t import droid, protocol
from arena_adapters_gr00t.embodiment import EmbodimentSpec, load_spec, parse_image_size
from arena_adapters_gr00t.modality import ModalityConfig
from arena_adapters_gr00t.transport import ARRAY_ENCODING_CHOICES, Gr00tTransport

AUTO = "auto"

PROBE_OPTIONS: tuple[Option, ...] = (
    Option("endpoint", str, protocol.DEFAULT_ENDPOINT, "server address tcp://HOST:PORT"),
    Option("timeout", float, 10.0, "seconds per request", above=0),
    Option("token", str, None, "API token (same as api_token)", secret=True),
    Option("api_token", str, None, "API token sent with every request", secret=True),
    Option("format", str, AUTO, "observation format to send: flat, nested, or auto (flat, then nested)",
           choices=(AUTO, *protocol.FORMATS)),
    Option("protocol_version", str, protocol.N16, "server generation: n1.6 (and later) or n1.5"),
    Option("array_encoding", str, AUTO, "request arrays: npy, nd (N1.7-era servers) or auto",
           choices=ARRAY_ENCODING_CHOICES),
    Option("batch", int, 1, "batch size B of the synthetic observation", minimum=1),
    Option("image_size", object, droid.IMAGE_SIZE, "camera size of the synthetic observation, e.g. 180x320"),
    Option("state_dims", object, None, "state dimensions, e.g. joint_position=7,gripper_position=1 "
           "(default: DROID's, else from --config, else 1)"),
    Option("config", object, None, "embodiment config (YAML path or dict) used when the server describes nothing"),
    Option("instruction", str, "pick up the cup", "language instruction of the synthetic observation"),
    Option("repeat", int, 5, "extra get_action calls for latency figures", minimum=0),
)

_DROID_STATE_DIMS = {droid.JOINT_POSITION: droid.JOINTS, droid.GRIPPER_POSITION: 1}


def probe_server(
    endpoint: str = protocol.DEFAULT_ENDPOINT,
    timeout: float = 10.0,
    *,
    token: str | None = None,
    api_token: str | None = None,
    format: str = AUTO,
    protocol_version: str = protocol.N16,
    array_encoding: str = AUTO,
    batch: int = 1,
    image_size: Any = droid.IMAGE_SIZE,
    state_dims: Any = None,
    config: Any = None,
    instruction: str = "pick up the cup",
    repeat: int = 5,
) -> ProbeReport:
    """Probe a GR00T server; returns one step per check (factory of ``gr00t.probe``).

    Raises:
        ConfigError: only for invalid options (server faults become failed steps).
    """
    size = parse_image_size(image_size) or droid.IMAGE_SIZE
    dims = _parse_state_dims(state_dims)
    fallback = load_spec(config) if config is not None else droid_fallback()
    version = protocol.check_protocol_version(protocol_version)
    formats = [protocol.FLAT] if version == protocol.N15 else (
        [protocol.FLAT, protocol.NESTED] if format == AUTO else [format])
    transport = Gr00tTransport(endpoint, timeout, api_token=token or api_token, protocol_version=version,
                               array_encoding=array_encoding)
    run = ProbeRun(str(transport.endpoint))
    try:
        ok, _ = run.step("ping", lambda: _ping(transport))
        if not ok:
            return run.report
        described: dict[str, ModalityConfig] = {}
        run.step("get_modality_config", lambda: _modality(transport, described))
        configs = described or _configs_of(fallback)
        observations = {fmt: synthetic_observation(configs, fmt, batch, size, _dims(configs, dims, fallback),
                                                   instruction) for fmt in formats}
        ok, sent = run.step(f"get_action (B={batch})", lambda: _first_fitting(transport, observations, configs, batch))
        if not ok or sent is None:
            return run.report
        fmt, shapes, problems = sent
        if not run.step("reply shapes", lambda: _shapes_step(shapes, problems))[0]:
            return run.report
        if repeat:
            run.latency(f"latency x{repeat}", lambda: transport.get_action(observations[fmt]), repeat)
        return run.report
    finally:
        transport.close()


def droid_fallback() -> EmbodimentSpec:
    """The DROID spec, used to describe a server that describes nothing."""
    return droid.droid_spec()


def _ping(transport: Gr00tTransport) -> tuple[str, Any]:
    reply = transport.ping()
    if not (isinstance(reply, dict) and reply.get("status") == "ok"):
        raise StepFailed(f"unexpected ping reply {reply!r}")
    return f"{reply!r}", reply


def _modality(transport: Gr00tTransport, described: dict[str, ModalityConfig]) -> tuple[str, None]:
    described.update(transport.get_modality_config())
    if not described:
        return "the server describes nothing; using the configured embodiment", None
    missing = [m for m in (protocol.VIDEO, protocol.STATE, protocol.ACTION, protocol.LANGUAGE) if m not in described]
    detail = "; ".join(f"{name} {list(c.modality_keys)} T={c.horizon}" for name, c in described.items())
    if missing:
        raise StepFailed(f"no {missing} in the reply: {detail}")
    return detail, None


def _configs_of(spec: EmbodimentSpec) -> dict[str, ModalityConfig]:
    configs = {
        protocol.VIDEO: ModalityConfig((0,) * (spec.video_horizon or 1), tuple(c.wire or "" for c in spec.cameras)),
        protocol.STATE: ModalityConfig((0,) * (spec.state_horizon or 1), tuple(s.wire or "" for s in spec.states)),
        protocol.LANGUAGE: ModalityConfig((0,), (spec.language_key or "",)),
    }
    if spec.actions is not None:
        configs[protocol.ACTION] = ModalityConfig(tuple(range(spec.action_horizon or 0)),
                                                  tuple(a.wire for a in spec.actions))
    return configs


def _parse_state_dims(value: Any) -> dict[str, int]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            return {name.strip(): int(dim) for name, dim in pairs}
        except ValueError:
            raise ConfigError(f"option 'state_dims': expected name=dim,name=dim, got {value!r}") from None
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    raise ConfigError(f"option 'state_dims': expected name=dim pairs or a dict, got {value!r}")


def _dims(configs: Mapping[str, ModalityConfig], given: Mapping[str, int], spec: EmbodimentSpec) -> dict[str, int]:
    from_spec = {s.wire: len(s.indices) for s in spec.states if s.wire and s.indices is not None}
    keys = configs[protocol.STATE].short_keys(protocol.STATE) if protocol.STATE in configs else ()
    return {key: given.get(key) or from_spec.get(key) or _DROID_STATE_DIMS.get(key) or 1 for key in keys}


def synthetic_observation(configs: Mapping[str, ModalityConfig], fmt: str, batch: int, image_size: tuple[int, int],
                          state_dims: Mapping[str, int], instruction: str) -> dict[str, Any]:
    """A well-formed observation for the described modalities (ramp images, zero states)."""
    video, state, language = (configs.get(m) for m in (protocol.VIDEO, protocol.STATE, protocol.LANGUAGE))
    height, width = image_size
    videos = {key: (np.arange(batch * video.horizon * height * width * 3) % 251).astype(np.uint8).reshape(
        batch, video.horizon, height, width, 3) for key in video.short_keys(protocol.VIDEO)} if video else {}
    states = {key: np.zeros((batch, state.horizon, state_dims.get(key, 1)), np.float32)
              for key in state.short_keys(protocol.STATE)} if state else {}
    language_keys = language.modality_keys if language else ()
    if fmt == protocol.FLAT:
        flat: dict[str, Any] = {f"video.{k}": v for k, v in videos.items()}
        flat.update({f"state.{k}": v for k, v in states.items()})
        flat.update({key: [instruction] * batch for key in language_keys})
        return flat
    return {protocol.VIDEO: videos, protocol.STATE: states,
            protocol.LANGUAGE: {key: [[instruction]] * batch for key in language_keys}}


def _first_fitting(transport: Gr00tTransport, observations: Mapping[str, dict[str, Any]],
                   configs: Mapping[str, ModalityConfig], batch: int) -> tuple[str, tuple[str, list[str], list[str]]]:
    """Send the formats in turn until one is accepted with a reply of the right shapes; when none
    fits, the first accepted one is reported (its shapes step fails)."""
    refused: list[str] = []
    misfits: list[tuple[str, list[str]]] = []
    for fmt, observation in observations.items():
        try:
            action, _ = transport.get_action(observation)
        except ServerError as exc:
            if len(observations) == 1:
                raise
            refused.append(f"{fmt}: {exc}")
            continue
        problems = _shape_problems(action, configs, fmt, batch)
        if not problems:
            shapes = [f"{key} {value.dtype} {value.shape}" for key, value in action.items()
                      if isinstance(value, np.ndarray)]
            return _accepted(fmt, refused, misfits), (fmt, shapes, [])
        misfits.append((fmt, problems))
    if misfits:
        fmt, problems = misfits[0]
        return _accepted(fmt, refused, misfits[1:]), (fmt, [], problems)
    raise StepFailed("the server refused every format: " + " | ".join(refused))


def _accepted(fmt: str, refused: list[str], misfits: list[tuple[str, list[str]]]) -> str:
    notes = [f"refused {text}" for text in refused] + [f"{other}: reply of the wrong shapes ({'; '.join(p)})"
                                                      for other, p in misfits]
    return f"{fmt} observation accepted" + (f" ({' | '.join(notes)})" if notes else "")


def _shapes_step(shapes: list[str], problems: list[str]) -> tuple[str, None]:
    if problems:
        raise StepFailed("; ".join(problems))
    return ", ".join(shapes), None


def _shape_problems(action: Any, configs: Mapping[str, ModalityConfig], fmt: str, batch: int) -> list[str]:
    """What is wrong with the reply's keys and shapes (nothing: ``[]``)."""
    if not isinstance(action, dict):
        return [f"the action is a {type(action).__name__}, not a map"]
    config = configs.get(protocol.ACTION)
    prefix = "action." if fmt == protocol.FLAT else ""
    keys = [prefix + k for k in config.short_keys(protocol.ACTION)] if config else list(action)
    problems = []
    for key in keys:
        value = action.get(key)
        if not isinstance(value, np.ndarray):
            problems.append(f"{key} missing" if value is None else f"{key} is a {type(value).__name__}")
            continue
        known = config is not None and bool(config.delta_indices)
        horizon = config.horizon if known and config else (value.shape[1] if value.ndim == 3 else None)
        if value.ndim != 3 or value.shape[0] != batch or value.shape[1] != horizon or value.dtype.kind != "f":
            problems.append(f"{key}: expected float (B={batch}, H={horizon}, D), got {value.dtype} {value.shape}")
    return problems
