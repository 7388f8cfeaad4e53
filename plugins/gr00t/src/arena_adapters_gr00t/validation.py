"""Strict observation and action checks, with the messages upstream's ``Gr00tPolicy`` (nested) and
``Gr00tSimPolicyWrapper`` (flat) give, so that the reference server replies the same errors.

Like upstream: dtypes, the horizon ``T``, 3 channels, one batch size everywhere and the language
layout are checked; image size, state dimension and extra keys are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.modality import ModalityConfig


class ObservationInvalid(ValueError):
    """An observation or action fails the strict checks; the message is what the server replies."""


def _fail(message: str) -> None:
    raise ObservationInvalid(message)


def _check_array(value: Any, label: str, key: str, dtype: type, dtype_name: str, ndim: int, layout: str,
                 horizon: int) -> None:
    if not isinstance(value, np.ndarray):
        _fail(f"{label} key '{key}' must be a numpy array. Got {type(value)}")
    if value.dtype != dtype:
        _fail(f"{label} key '{key}' must be a numpy array of type {dtype_name}. Got {value.dtype}")
    if value.ndim != ndim:
        _fail(f"{label} key '{key}' must be a numpy array of shape {layout}, got {value.shape}")
    if value.shape[1] != horizon:
        _fail(f"{label} key '{key}'s horizon must be {horizon}. Got {value.shape[1]}")


def check_nested_observation(observation: Any, configs: Mapping[str, ModalityConfig]) -> None:
    """Check a nested observation ``{"video": ..., "state": ..., "language": ...}`` like ``Gr00tPolicy``."""
    if not isinstance(observation, Mapping):
        _fail(f"Observation must be a dictionary. Got {type(observation)}")
    for modality in (protocol.VIDEO, protocol.STATE, protocol.LANGUAGE):
        if modality not in observation:
            _fail(f"Observation must contain a '{modality}' key")
        if not isinstance(observation[modality], Mapping):
            _fail(f"Observation '{modality}' must be a dictionary. Got {type(observation[modality])}")
    batch = -1

    def check_batch(label: str, key: str, value: Any) -> None:
        nonlocal batch
        size = len(value)
        if batch == -1:
            batch = size
        elif size != batch:
            _fail(f"{label} key '{key}' must have batch size {batch}. Got {size}")

    video, state, language = (observation[m] for m in (protocol.VIDEO, protocol.STATE, protocol.LANGUAGE))
    for key in configs[protocol.VIDEO].modality_keys:
        if key not in video:
            _fail(f"Video key '{key}' must be in observation")
        check_batch("Video", key, video[key])
        _check_array(video[key], "Video", key, np.uint8, "np.uint8", 5, "(B, T, H, W, C)",
                     configs[protocol.VIDEO].horizon)
        if video[key].shape[-1] != 3:
            _fail(f"Video key '{key}'s channel 'C' must be 3. Got {video[key].shape[-1]}")
    for key in configs[protocol.STATE].modality_keys:
        if key not in state:
            _fail(f"State key '{key}' must be in observation")
        check_batch("State", key, state[key])
        _check_array(state[key], "State", key, np.float32, "np.float32", 3, "(B, T, D)",
                     configs[protocol.STATE].horizon)
    language_horizon = configs[protocol.LANGUAGE].horizon
    for key in configs[protocol.LANGUAGE].modality_keys:
        if key not in language:
            _fail(f"Language key '{key}' must be in observation")
        check_batch("Language", key, language[key])
        texts = language[key]
        if not isinstance(texts, list):
            _fail(f"Language key '{key}' must be a list. Got {type(texts)}")
        for item in texts:
            if not isinstance(item, list):
                _fail(f"Language batch item must be a list. Got {type(item)}")
            if len(item) != language_horizon:
                _fail(f"Language key '{key}'s horizon must be {language_horizon}. Got {len(item)}")
            if len(item) != 1:
                _fail(f"Language batch item must have exactly one item. Got {len(item)}")
            if not isinstance(item[0], str):
                _fail(f"Language batch item must be a string. Got {type(item[0])}")


def check_flat_observation(observation: Any, configs: Mapping[str, ModalityConfig]) -> None:
    """Check a flat observation (``"video.<cam>"``, ``"state.<name>"``, language key) like
    ``Gr00tSimPolicyWrapper``."""
    if not isinstance(observation, Mapping):
        _fail(f"Observation must be a dictionary. Got {type(observation)}")
    for key in configs[protocol.VIDEO].modality_keys:
        flat = f"video.{key}"
        if flat not in observation:
            _fail(f"Video key '{flat}' must be in observation")
        _check_array(observation[flat], "Video", key, np.uint8, "np.uint8", 5, "(B, T, H, W, C)",
                     configs[protocol.VIDEO].horizon)
        if observation[flat].shape[-1] != 3:
            _fail(f"Video key '{key}'s channel 'C' must be 3. Got {observation[flat].shape[-1]}")
    for key in configs[protocol.STATE].modality_keys:
        flat = f"state.{key}"
        if flat not in observation:
            _fail(f"State key '{flat}' must be in observation")
        _check_array(observation[flat], "State", key, np.float32, "np.float32", 3, "(B, T, D)",
                     configs[protocol.STATE].horizon)
    for key in configs[protocol.LANGUAGE].modality_keys:
        if key not in observation:
            _fail(f"Language key '{key}' must be in observation")
        texts = observation[key]
        if not isinstance(texts, (tuple, list)):
            _fail(f"Language key '{key}' must be a tuple or list. Got {type(texts)}")
        if not texts or not isinstance(texts[0], str):
            _fail(f"Language batch item must be a string. Got {type(texts[0]) if texts else 'nothing'}")


def check_action(action: Any, config: ModalityConfig, prefix: str = "") -> None:
    """Check an action map like upstream's ``check_action`` (``prefix="action."`` for flat maps)."""
    if not isinstance(action, Mapping):
        _fail(f"Action must be a dictionary. Got {type(action)}")
    for key in config.modality_keys:
        wire = prefix + key
        if wire not in action:
            _fail(f"Action key '{wire}' must be in action")
        _check_array(action[wire], "Action", key, np.float32, "np.float32", 3, "(B, T, D)", config.horizon)
