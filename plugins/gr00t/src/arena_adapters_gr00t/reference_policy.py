"""Policies the reference server can serve, in upstream's policy interface.

A served policy has ``get_action(observation, options=None) -> (action, info)``,
``reset(options=None) -> dict`` and ``get_modality_config() -> {modality: ModalityConfig}``, like
upstream's ``BasePolicy``. :func:`as_served_policy` adapts what a user hands in:

- ``None``: :class:`ReferencePolicy`, a deterministic DROID-shaped test policy;
- ``"null"``: :class:`NullPolicy`, a constant DROID-shaped chunk that costs no work;
- an object with ``get_action``: used as is (``reset``/``get_modality_config`` optional);
- a plain callable ``fn(observation) -> action map`` (or ``(action, info)``): wrapped; it sees the
  observation exactly as sent, and may carry a ``modality_config`` attribute to describe itself.

:class:`FlatPolicyWrapper` does what ``--use-sim-policy-wrapper`` does upstream: it takes flat
observations (``"video.<cam>"``, ``"state.<name>"``, the language key) and replies ``"action.<name>"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from arena_adapters.records import NULL_POLICY
from arena_adapters_gr00t import droid_keys as droid
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.modality import ActionConfig, ModalityConfig, as_modality_configs
from arena_adapters_gr00t.validation import (
    ObservationInvalid,
    check_action,
    check_flat_observation,
    check_nested_observation,
)

ACTION_STEP = np.float32(0.01)


def droid_modality_configs(action_horizon: int = droid.ACTION_HORIZON) -> dict[str, ModalityConfig]:
    """The ``OXE_DROID`` modality configs of GR00T N1.6 (what ``get_modality_config`` replies)."""
    return {
        protocol.VIDEO: ModalityConfig((0,), (droid.EXTERIOR_CAMERA, droid.WRIST_CAMERA)),
        protocol.STATE: ModalityConfig((0,), (droid.JOINT_POSITION, droid.GRIPPER_POSITION)),
        protocol.ACTION: ModalityConfig(
            tuple(range(action_horizon)),
            (droid.JOINT_POSITION, droid.GRIPPER_POSITION),
            action_configs=(
                ActionConfig("RELATIVE", "NON_EEF", "DEFAULT"),
                ActionConfig("ABSOLUTE", "NON_EEF", "DEFAULT"),
            ),
        ),
        protocol.LANGUAGE: ModalityConfig((0,), (droid.LANGUAGE_KEY,)),
    }


class ReferencePolicy:
    """A deterministic policy in upstream's nested interface, DROID-shaped by default.

    For every action key with a state key of the same name,
    ``action[k] = state[k][:, -1:, :] + 0.01 * arange(H)`` (float32, shape ``(B, H, D)``), where H is
    the action horizon; other action keys are zeros ``(B, H, 1)``. ``info`` is ``{}``.

    Args:
        modality_configs: what the policy expects (default: DROID, H = 32).
        strict: check observations and actions as upstream's ``Gr00tPolicy(strict=True)`` does.
    """

    def __init__(self, modality_configs: Mapping[str, Any] | None = None, *, strict: bool = True) -> None:
        configs = as_modality_configs(modality_configs) if modality_configs is not None else droid_modality_configs()
        missing = [m for m in (protocol.VIDEO, protocol.STATE, protocol.ACTION, protocol.LANGUAGE) if m not in configs]
        if missing:
            raise ValueError(f"modality_configs lacks {missing}")
        self.modality_configs = configs
        self.strict = strict
        self.calls = 0
        self.resets = 0

    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None
                   ) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """Compute the deterministic action chunk of a nested observation."""
        if self.strict:
            check_nested_observation(observation, self.modality_configs)
        self.calls += 1
        action_config = self.modality_configs[protocol.ACTION]
        horizon = action_config.horizon
        ramp = (ACTION_STEP * np.arange(horizon, dtype=np.float32))[None, :, None]
        states = observation[protocol.STATE]
        batch = _batch_size(observation)
        action: dict[str, NDArray[Any]] = {}
        for key in action_config.modality_keys:
            if key in states:
                last = np.asarray(states[key])[:, -1:, :].astype(np.float32)
                action[key] = last + ramp
            else:
                action[key] = np.zeros((batch, horizon, 1), dtype=np.float32)
        if self.strict:
            check_action(action, action_config)
        return action, {}

    def reset(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Count the reset; reply ``{}`` like the stock ``Gr00tPolicy``."""
        self.resets += 1
        return {}

    def get_modality_config(self) -> dict[str, ModalityConfig]:
        return dict(self.modality_configs)


def _batch_size(observation: Mapping[str, Any]) -> int:
    for modality in (protocol.VIDEO, protocol.STATE):
        for value in observation.get(modality, {}).values():
            return len(value)
    for value in observation.get(protocol.LANGUAGE, {}).values():
        return len(value)
    return 0


class NullPolicy:
    """A constant chunk of zeros for every env, computed once per batch size: no per-request work
    beyond reading the batch size, so a client measured against it measures itself and the wire.

    Replies the action keys of its modality configs (default DROID: ``joint_position`` (B, 32, 7),
    ``gripper_position`` (B, 32, 1)), prefixed ``"action."`` when ``flat``; ``info`` is ``{}``.
    Observations are not checked.
    """

    def __init__(self, modality_configs: Mapping[str, Any] | None = None, *, flat: bool = True,
                 action_dims: Mapping[str, int] | None = None) -> None:
        configs = as_modality_configs(modality_configs) if modality_configs is not None else droid_modality_configs()
        self.modality_configs = configs
        dims = dict(action_dims or {droid.JOINT_POSITION: droid.JOINTS, droid.GRIPPER_POSITION: 1})
        action_config = configs[protocol.ACTION]
        prefix = "action." if flat else ""
        self._layout = [(prefix + key, dims.get(key, 1)) for key in action_config.modality_keys]
        self._horizon = action_config.horizon
        self._chunks: dict[int, dict[str, NDArray[np.float32]]] = {}

    def get_action(self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
                   ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """The cached zero chunk for this batch size."""
        batch = _batch_size(observation) if protocol.VIDEO in observation else _flat_batch_size(observation)
        chunk = self._chunks.get(batch)
        if chunk is None:
            chunk = {key: np.zeros((batch, self._horizon, dim), dtype=np.float32) for key, dim in self._layout}
            self._chunks[batch] = chunk
        return chunk, {}

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Nothing to reset."""
        return {}

    def get_modality_config(self) -> dict[str, ModalityConfig]:
        return dict(self.modality_configs)


def _flat_batch_size(observation: Mapping[str, Any]) -> int:
    for key, value in observation.items():
        if key.startswith((protocol.VIDEO + ".", protocol.STATE + ".")):
            return len(value)
    return 0


class FlatPolicyWrapper:
    """Flat observations in, flat actions out, around a nested policy (``--use-sim-policy-wrapper``).

    With ``strict``, flat observations are checked like upstream's ``Gr00tSimPolicyWrapper``
    (using the inner policy's modality configs, when it has them).
    """

    def __init__(self, policy: Any, *, strict: bool = True) -> None:
        self.policy = policy
        self.strict = strict

    def get_modality_config(self) -> dict[str, ModalityConfig]:
        getter = getattr(self.policy, "get_modality_config", None)
        return as_modality_configs(getter()) if callable(getter) else {}

    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], Any]:
        configs = self.get_modality_config()
        if self.strict and configs:
            check_flat_observation(observation, configs)
        action, info = self.policy.get_action(self._nested(observation, configs), options)
        return {f"action.{key}": value for key, value in action.items()}, info

    def reset(self, options: dict[str, Any] | None = None) -> Any:
        reset = getattr(self.policy, "reset", None)
        return reset(options) if callable(reset) else {}

    @staticmethod
    def _nested(observation: Mapping[str, Any], configs: Mapping[str, ModalityConfig]) -> dict[str, Any]:
        if not isinstance(observation, Mapping):
            raise ObservationInvalid(f"Observation must be a dictionary. Got {type(observation)}")
        nested: dict[str, dict[str, Any]] = {protocol.VIDEO: {}, protocol.STATE: {}, protocol.LANGUAGE: {}}
        language_keys = configs[protocol.LANGUAGE].modality_keys if protocol.LANGUAGE in configs else None
        for key, value in observation.items():
            modality, _, name = key.partition(".")
            if modality in (protocol.VIDEO, protocol.STATE) and name:
                nested[modality][name] = value
            elif language_keys is None or key in language_keys:
                nested[protocol.LANGUAGE][key] = np.asarray(value, dtype=str).reshape(-1, 1).tolist()
        return nested


class CallablePolicy:
    """A plain callable served as a policy: ``fn(observation)`` returns the action map (or
    ``(action, info)``); ``fn.reset(options)`` and ``fn.modality_config`` are used when present."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def get_action(self, observation: Any, options: dict[str, Any] | None = None) -> tuple[Any, Any]:
        result = self.fn(observation)
        if isinstance(result, tuple) and len(result) == 2:
            return result
        return result, {}

    def reset(self, options: dict[str, Any] | None = None) -> Any:
        reset = getattr(self.fn, "reset", None)
        return reset(options) if callable(reset) else {}

    def get_modality_config(self) -> Any:
        config = getattr(self.fn, "modality_config", None)
        return config() if callable(config) else (config or {})


def as_served_policy(policy: Any, *, format: str | None = None, strict: bool = True) -> Any:
    """Adapt ``policy`` (see the module docstring) to the upstream policy interface.

    ``format="flat"`` wraps policy objects (and the built-in policy, which it is by default) in
    :class:`FlatPolicyWrapper`; plain callables are never wrapped.
    """
    if format is not None and format not in protocol.FORMATS:
        raise ValueError(f"format must be one of {list(protocol.FORMATS)}, got {format!r}")
    if isinstance(policy, str) and policy == NULL_POLICY:
        return NullPolicy(flat=format != protocol.NESTED)
    if policy is None:
        served: Any = ReferencePolicy(strict=strict)
        return served if format == protocol.NESTED else FlatPolicyWrapper(served, strict=strict)
    if callable(getattr(policy, "get_action", None)):
        return FlatPolicyWrapper(policy, strict=strict) if format == protocol.FLAT else policy
    if callable(policy):
        return CallablePolicy(policy)
    raise TypeError(f"a GR00T policy must have get_action(observation, options) or be callable, got {policy!r}")
