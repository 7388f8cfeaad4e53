"""Isaac Lab style observations -> openpi wire observations (one dict per queried env).

The translator reads the layout of the configured embodiment (DROID by default, LIBERO, ALOHA),
checks every tensor it uses (key, dtype, shape; errors name the key, what was expected and what
arrived) before anything is sent, resizes cameras with padding to ``image_size`` in one batched call
per camera on the env device (numerically like openpi's ``image_tools.resize_with_pad``), and copies
each field to the host once for all queried envs, with one synchronisation per query. Per-env wire
arrays are views of those copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from arena_adapters.errors import ConfigError, ObservationError
from arena_adapters.host_memory import to_host
from arena_adapters.imaging import resize_with_pad
from arena_adapters.observations import describe, lookup, require_batch, require_tensor, select_rows
from arena_adapters.parts import Observation, Query
from arena_adapters_openpi import aloha, droid, libero
from arena_adapters_openpi.layout import ImageField, Layout, StateField, resolve_paths

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (droid.LAYOUT, libero.LAYOUT, aloha.LAYOUT)}
"""The supported embodiments by name."""
EMBODIMENTS: tuple[str, ...] = tuple(LAYOUTS)
IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
STATE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
STATE_WIRE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def layout_of(embodiment: str) -> Layout:
    """The :class:`Layout` of ``embodiment``.

    Raises:
        ConfigError: an unknown embodiment.
    """
    try:
        return LAYOUTS[embodiment]
    except KeyError:
        raise ConfigError(f"option 'embodiment': expected one of {list(EMBODIMENTS)}, got {embodiment!r}") from None


class OpenpiObservations:
    """:class:`~arena_adapters.parts.ObservationTranslator` for openpi servers.

    Args:
        embodiment: ``"droid"``, ``"libero"`` or ``"aloha"``.
        paths: observation paths overriding the embodiment's defaults, by field name
            (``{"wrist_image_left": "camera_obs.wrist"}``, or ``"field=path,field=a+b"``).
        image_size: cameras are resized with padding to ``image_size`` squared (0: sent as they are).
        state_dtype: ``"float64"`` (what the upstream example clients send) or ``"float32"``.

    ``translate`` returns a list with one wire observation dict per queried env, in env order. The
    env's instruction is sent as ``prompt`` when it is set; without one, no ``prompt`` is sent and
    the server's default prompt (openpi's ``default_prompt``) applies.
    Float images (0..1) are converted to uint8 (``x * 255``, clamped); RGBA cameras lose alpha.
    """

    def __init__(
        self,
        embodiment: str = "droid",
        paths: Mapping[str, Any] | str | None = None,
        image_size: int = 224,
        state_dtype: str = "float64",
    ) -> None:
        self.layout = layout_of(embodiment)
        self.paths, self._configured = resolve_paths(self.layout, paths)
        if not isinstance(image_size, int) or image_size < 0:
            raise ConfigError(f"option 'image_size': expected an int >= 0, got {image_size!r}")
        if state_dtype not in STATE_WIRE_DTYPES:
            raise ConfigError(f"option 'state_dtype': expected one of {list(STATE_WIRE_DTYPES)}, got {state_dtype!r}")
        self.image_size = image_size
        self.state_dtype = STATE_WIRE_DTYPES[state_dtype]

    def translate(self, observation: Observation, query: Query) -> list[dict[str, Any]]:
        """One wire observation per queried env (see the class docstring).

        Raises:
            ObservationError: a key is missing, or a tensor has the wrong dtype or shape.
        """
        wires: list[tuple[str, ...]] = []
        tensors: list[torch.Tensor] = []
        for field in self.layout.fields:
            paths = self.paths[field.name]
            if not paths:
                continue
            if isinstance(field, ImageField):
                if not field.required and field.name not in self._configured and not _has(observation, paths[0]):
                    continue
                tensors.append(self._image_rows(observation, paths[0], field, query))
            else:
                tensors.append(self._state_rows(observation, paths, field, query))
            wires.append(field.wire)
        columns = list(zip(wires, to_host(tensors), strict=True))
        prompts = query.instructions or ("",) * query.size
        requests: list[dict[str, Any]] = []
        for row in range(query.size):
            request: dict[str, Any] = {}
            for wire, batch in columns:
                target = request
                for key in wire[:-1]:
                    target = target.setdefault(key, {})
                target[wire[-1]] = batch[row]
            prompt = prompts[row]
            if prompt:
                request["prompt"] = prompt
            requests.append(request)
        return requests

    def _image_rows(self, observation: Observation, path: str, field: ImageField, query: Query) -> torch.Tensor:
        images = require_tensor(
            lookup(observation, path), path, dtypes=IMAGE_DTYPES, shape=("num_envs", "height", "width", "channels")
        )
        require_batch(images, path, query.num_envs)
        if images.shape[-1] not in (3, 4):
            raise ObservationError(
                f"observation {path!r} (camera {field.name!r}): expected (num_envs, height, width, 3|4) "
                f"channels-last RGB, got {describe(images)}"
            )
        rows = select_rows(images, query)[..., :3]
        if rows.dtype != torch.uint8:
            rows = (rows.float() * 255).clamp_(0, 255).to(torch.uint8)
        if self.image_size:
            rows = resize_with_pad(rows, self.image_size, self.image_size)
        return rows.permute(0, 3, 1, 2) if field.channels_first else rows

    def _state_rows(
        self, observation: Observation, paths: tuple[str, ...], field: StateField, query: Query
    ) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        for path in paths:
            value = require_tensor(lookup(observation, path), path, dtypes=STATE_DTYPES)
            require_batch(value, path, query.num_envs)
            if value.ndim == 1:
                value = value.unsqueeze(1)
            elif value.ndim != 2:
                raise ObservationError(f"observation {path!r}: expected (num_envs, dim) floats, got {describe(value)}")
            parts.append(value)
        total = sum(int(p.shape[1]) for p in parts)
        if total != field.size:
            got = " + ".join(f"{path} {describe(p)}" for path, p in zip(paths, parts, strict=True))
            raise ObservationError(
                f"observation {' + '.join(map(repr, paths))} (openpi {field.name!r} of {self.layout.name}): "
                f"expected {field.size} values per env, got {total} ({got})"
            )
        state = parts[0] if len(parts) == 1 else torch.cat([p.to(self.state_dtype) for p in parts], dim=1)
        return select_rows(state, query).to(self.state_dtype)


def _has(observation: Observation, path: str) -> bool:
    try:
        lookup(observation, path)
    except ObservationError:
        return False
    return True


def synthetic_request(layout: Layout, prompt: str = "", image_size: int = 224) -> dict[str, Any]:
    """A plausible wire observation for ``layout`` (gradient images, small state values), built
    directly in wire form, for probes and benchmarks."""
    size = image_size or 224
    gradient = (np.arange(size * size * 3, dtype=np.int64) % 251).astype(np.uint8).reshape(size, size, 3)
    request: dict[str, Any] = {}
    for field in layout.fields:
        target = request
        for key in field.wire[:-1]:
            target = target.setdefault(key, {})
        if isinstance(field, ImageField):
            chw = np.ascontiguousarray(gradient.transpose(2, 0, 1))
            target[field.wire[-1]] = chw if field.channels_first else gradient
        else:
            target[field.wire[-1]] = np.linspace(-0.5, 0.5, field.size, dtype=np.float64)
    if prompt:
        request["prompt"] = prompt
    return request
