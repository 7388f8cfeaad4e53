"""Spec-driven translators between Isaac Lab observations/actions and GR00T wire maps.

:class:`Gr00tObservations` turns the rows of the queried envs into ONE batched GR00T observation
(batch axis ``B`` = number of queried envs): images are selected, resized with padding on their own
device (batched, no per-env loop), state columns are picked, and everything crosses to the host
once. :class:`Gr00tActions` concatenates the reply's action groups into a ``(B, H, action_dim)``
float32 tensor on the env device. Both read missing names/horizons from the server's
``get_modality_config`` in ``on_connect`` (see :mod:`arena_adapters_gr00t.embodiment`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from arena_adapters.errors import ActionError, ConfigError, ObservationError
from arena_adapters.host_memory import to_host
from arena_adapters.imaging import resize_with_pad
from arena_adapters.layouts import ActionLayout, ControlMode
from arena_adapters.observations import describe, lookup, require_batch, require_tensor, select_rows
from arena_adapters.parts import Observation, Query
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.embodiment import ActionGroupSpec, EmbodimentSpec, load_spec
from arena_adapters_gr00t.modality import as_modality_configs

STATE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _server_configs(transport: Any) -> dict[str, Any]:
    metadata = getattr(transport, "metadata", None)
    return as_modality_configs(metadata()) if callable(metadata) else {}


def _check_version(spec: EmbodimentSpec, transport: Any) -> None:
    if getattr(transport, "protocol_version", protocol.N16) == protocol.N15 and spec.format != protocol.FLAT:
        raise ConfigError("GR00T N1.5 servers take flat observations: use format='flat'")


class Gr00tObservations:
    """Observation translator: Isaac Lab observation rows -> one batched GR00T observation map.

    Args:
        spec: the embodiment (or a dict / YAML path, see :func:`~arena_adapters_gr00t.embodiment.load_spec`).
        format: ``"flat"`` or ``"nested"``, overriding the spec's.
    """

    def __init__(self, spec: EmbodimentSpec | Mapping[str, Any] | str, format: str | None = None) -> None:
        self.spec = load_spec(spec).with_format(format)
        self._resolved: EmbodimentSpec | None = None
        self._index_cache: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}

    def on_connect(self, transport: Any) -> None:
        """Read the server's modality configs and complete/check the spec against them."""
        _check_version(self.spec, transport)
        self._resolved = self.spec.resolve(_server_configs(transport))

    @property
    def resolved(self) -> EmbodimentSpec:
        """The spec with names and horizons filled in (from the server when connected)."""
        if self._resolved is None:
            self._resolved = self.spec.resolve({})
        return self._resolved

    def translate(self, observation: Observation, query: Query) -> dict[str, Any]:
        """The wire observation of the envs in ``query``, batch axis ``B = query.size``.

        Raises:
            ObservationError: a missing key, wrong dtype/shape or batch size (nothing was sent).
        """
        spec = self.resolved
        tensors: list[torch.Tensor] = []
        for camera in spec.cameras:
            tensors.append(self._camera(observation, camera.path, query, spec))
        for state in spec.states:
            tensors.append(self._state(observation, state.path, state.indices, query, spec))
        arrays = to_host(tensors)
        language = list(query.instructions) if query.instructions else [""] * query.size
        videos = arrays[: len(spec.cameras)]
        states = arrays[len(spec.cameras):]
        if spec.format == protocol.FLAT:
            flat: dict[str, Any] = {}
            for camera, array in zip(spec.cameras, videos, strict=True):
                flat[spec.video_key(camera.wire or "")] = array
            for state, array in zip(spec.states, states, strict=True):
                flat[spec.state_key(state.wire or "")] = array
            flat[spec.language_key or ""] = language
            return flat
        return {
            protocol.VIDEO: {c.wire: a for c, a in zip(spec.cameras, videos, strict=True)},
            protocol.STATE: {s.wire: a for s, a in zip(spec.states, states, strict=True)},
            protocol.LANGUAGE: {spec.language_key: [[text] for text in language]},
        }

    def _camera(self, observation: Observation, path: str, query: Query, spec: EmbodimentSpec) -> torch.Tensor:
        images = require_tensor(lookup(observation, path), path, dtypes=(torch.uint8,),
                                shape=("num_envs", "height", "width", "3"))
        require_batch(images, path, query.num_envs)
        channels = images.shape[-1]
        if channels == 4:
            images = images[..., :3]
        elif channels != 3:
            raise ObservationError(f"observation {path!r}: expected uint8 (num_envs, height, width, 3) RGB "
                                   f"(or RGBA), got {describe(images)}")
        rows = select_rows(images, query)
        if spec.image_size is not None:
            rows = resize_with_pad(rows, *spec.image_size)
        frames = rows.unsqueeze(1)
        horizon = spec.video_horizon or 1
        return frames if horizon == 1 else frames.expand(-1, horizon, -1, -1, -1)

    def _state(self, observation: Observation, path: str, indices: tuple[int, ...] | None, query: Query,
               spec: EmbodimentSpec) -> torch.Tensor:
        value = lookup(observation, path)
        if isinstance(value, torch.Tensor) and value.ndim == 1:
            value = value.unsqueeze(-1)
        state = require_tensor(value, path, dtypes=STATE_DTYPES, shape=("num_envs", "dim"))
        require_batch(state, path, query.num_envs)
        rows = select_rows(state, query)
        if indices is not None:
            if max(indices) >= rows.shape[1]:
                raise ObservationError(f"observation {path!r}: the config selects columns {list(indices)}, "
                                       f"got {describe(state)}")
            rows = rows.index_select(1, self._indices(indices, rows.device))
        rows = rows.to(torch.float32).unsqueeze(1)
        horizon = spec.state_horizon or 1
        return rows if horizon == 1 else rows.expand(-1, horizon, -1)

    def _indices(self, indices: tuple[int, ...], device: torch.device) -> torch.Tensor:
        key = (indices, device)
        cached = self._index_cache.get(key)
        if cached is None:
            cached = torch.tensor(indices, dtype=torch.long, device=device)
            self._index_cache[key] = cached
        return cached


class Gr00tActions:
    """Action translator: a GR00T action map ``{key: (B, H, D)}`` -> ``(B, H, action_dim)`` float32
    tensor on the env device, groups concatenated in spec order (or scattered to their indices).

    Args:
        spec: the embodiment (or a dict / YAML path).
        format: ``"flat"`` (keys ``action.<group>``) or ``"nested"``, overriding the spec's.
    """

    def __init__(self, spec: EmbodimentSpec | Mapping[str, Any] | str, format: str | None = None) -> None:
        self.spec = load_spec(spec).with_format(format)
        self._resolved: EmbodimentSpec | None = None

    def on_connect(self, transport: Any) -> None:
        """Read the server's action keys and horizon when the spec leaves them out."""
        _check_version(self.spec, transport)
        self._resolved = self.spec.resolve_actions(_server_configs(transport))

    @property
    def resolved(self) -> EmbodimentSpec:
        """The spec with action groups and horizon filled in (from the server when connected)."""
        if self._resolved is None:
            self._resolved = self.spec.resolve_actions({})
        return self._resolved

    @property
    def action_layout(self) -> ActionLayout | None:
        """The env action columns the spec's action groups fill, named by group (``joint_position_0``
        ... ``gripper_position``); joint positions for DROID. ``None`` when the groups' sizes come from
        the server."""
        groups = self.spec.actions or ()
        if not groups or any(group.dim is None or group.indices is not None for group in groups):
            return None
        labels = [group.wire if group.dim == 1 else f"{group.wire}_{i}" for group in groups
                  for i in range(group.dim or 0)]
        if self.spec.action_dim is not None and self.spec.action_dim != len(labels):
            return ActionLayout.of_width(self.spec.action_dim)
        droid = [group.wire for group in groups] == ["joint_position", "gripper_position"]
        return ActionLayout.of(labels, ControlMode.JOINT_POSITION if droid else ControlMode.OTHER,
                               "rad" if droid else "")

    def translate(self, reply: Any, query: Query) -> torch.Tensor:
        """The ``(query.size, H, action_dim)`` chunk.

        Raises:
            ActionError: a missing action key, or a wrong batch size, horizon, dimension or dtype.
        """
        spec = self.resolved
        if not isinstance(reply, Mapping):
            raise ActionError(f"GR00T reply must be an action map, got {describe(reply)}")
        groups = spec.actions
        if groups is None:
            prefix = "action." if spec.format == protocol.FLAT else ""
            keys = [k for k in reply if isinstance(k, str) and k.startswith(prefix)]
            if not keys:
                raise ActionError(f"GR00T reply has no action keys: {list(reply)}")
            wires = [k[len(prefix):] for k in keys]
            parts = [self._group(reply, k, None, query.size, spec.action_horizon) for k in keys]
        else:
            wires = [g.wire for g in groups]
            parts = [self._group(reply, spec.action_key(g.wire), g.dim, query.size, spec.action_horizon)
                     for g in groups]
        horizons = {p.shape[1] for p in parts}
        if len(horizons) != 1:
            shapes = {w: p.shape for w, p in zip(wires, parts, strict=True)}
            raise ActionError(f"GR00T action groups disagree on the horizon: {shapes}")
        chunk = np.concatenate(parts, axis=-1) if len(parts) > 1 else np.array(parts[0], copy=True)
        if groups is not None:
            chunk = _arrange(chunk, groups, [p.shape[-1] for p in parts], spec.action_dim)
        return torch.from_numpy(chunk).to(query.device)

    @staticmethod
    def _group(reply: Mapping[str, Any], key: str, dim: int | None, batch: int, horizon: int | None) -> NDArray[Any]:
        if key not in reply:
            raise ActionError(f"GR00T reply lacks action key {key!r}; it has {list(reply)}")
        value = reply[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise ActionError(f"GR00T action {key!r}: expected a float array (B, H, D), got {describe(value)}")
        expected = f"(B={batch}, H={horizon or 'any'}, D={dim or 'any'})"
        if (value.ndim != 3 or value.shape[0] != batch or (horizon is not None and value.shape[1] != horizon)
                or (dim is not None and value.shape[2] != dim)):
            raise ActionError(f"GR00T action {key!r}: expected {expected}, got {value.dtype} {value.shape}")
        return value.astype(np.float32, copy=False)


def _arrange(chunk: NDArray[Any], groups: Sequence[ActionGroupSpec], widths: Sequence[int],
             action_dim: int | None) -> NDArray[Any]:
    """Binarize groups that ask for it, then place each group at its env action columns."""
    starts = np.cumsum([0, *widths[:-1]]).tolist()
    for group, start, width in zip(groups, starts, widths, strict=True):
        if group.binarize is not None:
            part = chunk[..., start:start + width]
            chunk[..., start:start + width] = (part > group.binarize).astype(np.float32)
    if all(group.indices is None for group in groups):
        if action_dim is not None and chunk.shape[-1] != action_dim:
            raise ActionError(f"GR00T action groups give {chunk.shape[-1]} values per step, "
                              f"the config says action_dim={action_dim}")
        return chunk
    out = np.zeros((*chunk.shape[:2], action_dim or chunk.shape[-1]), dtype=np.float32)
    for group, start, width in zip(groups, starts, widths, strict=True):
        target = list(group.indices) if group.indices is not None else list(range(start, start + width))
        if max(target) >= out.shape[-1]:
            raise ActionError(f"GR00T action group {group.wire!r} goes to columns {target}, "
                              f"beyond action_dim={out.shape[-1]}")
        out[..., target] = chunk[..., start:start + width]
    return out
