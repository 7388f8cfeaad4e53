"""The built-in deterministic policy served by ``arena-adapters serve openpi`` without ``--policy``.

It behaves like an openpi policy object (``infer(obs) -> dict``, ``metadata``, ``reset()``) and
answers all three observation layouts with actions computed from the observed state, so tests can
check values end to end::

    DROID   state = concat(joint_position (7), gripper_position (1))  -> actions (H, 8)
    LIBERO  state = observation/state (8)                             -> actions (H, 7) from state[:7]
    ALOHA   state = state (14)                                        -> actions (H, 14)

    actions[t] = state[:D] + 0.01 * t      (float32, t = 0 .. H-1)

It checks the observation like a model would (keys present, images uint8 with 3 channels, state
sizes) and raises ``ValueError`` otherwise, which the server reports as a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

STEP = 0.01


class EchoStatePolicy:
    """A deterministic stand-in for an openpi policy.

    Args:
        action_horizon: ``H``, the number of actions per chunk.
        delay: seconds of simulated inference per request (``time.sleep``, like a blocking model).
        metadata: what the server sends on connect (``{}`` like the DROID/LIBERO configs).
    """

    def __init__(self, action_horizon: int = 10, delay: float = 0.0, metadata: Mapping[str, Any] | None = None) -> None:
        if action_horizon < 1:
            raise ValueError(f"action_horizon must be >= 1, got {action_horizon}")
        self.action_horizon = int(action_horizon)
        self.delay = float(delay)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.calls = 0

    def infer(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``{"actions": (H, D) float32, "policy_timing": {"infer_ms": ...}}``."""
        started = time.monotonic()
        self.calls += 1
        if not isinstance(obs, Mapping):
            raise ValueError(f"observation must be a map, got {type(obs).__name__}")
        state, dim = _state_of(obs)
        if self.delay > 0:
            time.sleep(self.delay)
        steps = (STEP * np.arange(self.action_horizon, dtype=np.float32))[:, None]
        actions = state[:dim].astype(np.float32)[None, :] + steps
        return {"actions": actions, "policy_timing": {"infer_ms": (time.monotonic() - started) * 1000}}

    def reset(self) -> None:
        """Nothing to reset: the policy is stateless."""


class NullPolicy:
    """A constant ``(H, 8)`` zero chunk for every observation, unchecked: a request costs the
    server nothing but the wire (``arena-adapters serve openpi --policy null``).

    Args:
        action_horizon: ``H``.
        action_dim: actions per step (8: DROID joints and gripper).
    """

    def __init__(self, action_horizon: int = 10, action_dim: int = 8) -> None:
        if action_horizon < 1 or action_dim < 1:
            raise ValueError(f"action_horizon and action_dim must be >= 1, got {action_horizon}, {action_dim}")
        self.metadata: dict[str, Any] = {}
        self._reply = {"actions": np.zeros((action_horizon, action_dim), dtype=np.float32)}

    def infer(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """The constant reply (a fresh dict around the same array)."""
        return dict(self._reply)

    def reset(self) -> None:
        """Nothing to reset."""


def _state_of(obs: Mapping[str, Any]) -> tuple[np.ndarray[Any, Any], int]:
    if "observation/joint_position" in obs:
        for key in ("observation/exterior_image_1_left", "observation/wrist_image_left"):
            _check_image(obs, key, channels_last=True)
        joints = _vector(obs, "observation/joint_position", 7)
        gripper = _vector(obs, "observation/gripper_position", 1)
        return np.concatenate([joints, gripper]), 8
    if "observation/state" in obs:
        for key in ("observation/image", "observation/wrist_image"):
            _check_image(obs, key, channels_last=True)
        return _vector(obs, "observation/state", 8), 7
    if "state" in obs:
        images = obs.get("images")
        if not isinstance(images, Mapping) or "cam_high" not in images:
            raise ValueError("ALOHA observation needs an 'images' map with at least 'cam_high'")
        for key in images:
            _check_image(images, key, channels_last=False)
        return _vector(obs, "state", 14), 14
    raise ValueError(
        f"unrecognized observation keys {sorted(map(str, obs))}: expected DROID "
        "('observation/joint_position', ...), LIBERO ('observation/state', ...) or ALOHA ('state', 'images')"
    )


def _vector(obs: Mapping[str, Any], key: str, size: int) -> np.ndarray[Any, Any]:
    if key not in obs:
        raise ValueError(f"observation lacks {key!r}")
    value = np.asarray(obs[key])
    if value.shape != (size,) or value.dtype.kind != "f":
        raise ValueError(f"{key!r}: expected float ({size},), got {value.dtype} {value.shape}")
    return value


def _check_image(obs: Mapping[str, Any], key: str, *, channels_last: bool) -> None:
    if key not in obs:
        raise ValueError(f"observation lacks image {key!r}")
    image = obs[key]
    channel_axis = -1 if channels_last else 0
    is_image = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
    if not is_image or image.shape[channel_axis] != 3:
        layout = "(H, W, 3)" if channels_last else "(3, H, W)"
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image {key!r}: expected uint8 {layout}, got {got}")
