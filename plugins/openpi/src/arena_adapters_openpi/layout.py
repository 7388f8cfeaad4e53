"""How an embodiment's openpi observation is laid out, field by field.

An embodiment module (:mod:`~arena_adapters_openpi.droid`, :mod:`~arena_adapters_openpi.libero`,
:mod:`~arena_adapters_openpi.aloha`) declares a :class:`Layout`: the wire keys in upstream order,
where each value comes from in an Isaac Lab style observation (dotted paths), and its form.
:class:`~arena_adapters_openpi.observations.OpenpiObservations` turns any layout into requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arena_adapters.errors import ConfigError


@dataclass(frozen=True)
class ImageField:
    """A camera: uint8 ``(N, H, W, 3|4)`` in the env, uint8 ``(S, S, 3)`` (or ``(3, S, S)``) on the wire.

    Attributes:
        name: the field name used in the ``paths`` option (``"wrist_image_left"``).
        wire: the key path in the wire observation (``("observation/wrist_image_left",)``,
            ``("images", "cam_high")``).
        path: the default observation path.
        channels_first: send CHW (ALOHA) instead of HWC.
        required: a missing optional camera is left out unless its path was configured.
    """

    name: str
    wire: tuple[str, ...]
    path: str
    channels_first: bool = False
    required: bool = True


@dataclass(frozen=True)
class StateField:
    """A float vector: the concatenation of ``paths`` (each ``(N, d)``), ``size`` long in all.

    Attributes:
        name: the field name used in the ``paths`` option.
        wire: the key path in the wire observation.
        paths: the default observation paths, concatenated in order.
        size: the expected total length.
    """

    name: str
    wire: tuple[str, ...]
    paths: tuple[str, ...]
    size: int


Field = ImageField | StateField


@dataclass(frozen=True)
class Layout:
    """An embodiment's wire observation.

    Attributes:
        name: ``"droid"``, ``"libero"``, ``"aloha"``.
        fields: images and state vectors, in the upstream key order (``prompt`` follows them).
        action_dim: the action size the upstream configs reply with.
        action_horizon: ``H`` of the best-known model (for synthetic replies and docs only).
    """

    name: str
    fields: tuple[Field, ...]
    action_dim: int = 8
    action_horizon: int = 10


def resolve_paths(layout: Layout, paths: Mapping[str, Any] | str | None) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """The observation path(s) of every field, with the user's ``paths`` over the defaults.

    ``paths`` maps field names to a dotted path, a list of paths (state vectors are concatenated),
    or ``""``/``None`` to leave an optional camera out. As text: ``"field=path,field=a+b"``.

    Returns:
        ``{field name: paths}`` and the set of field names the user configured.

    Raises:
        ConfigError: an unknown field name, or a required field switched off.
    """
    given = _parse_paths(paths)
    known = {f.name: f for f in layout.fields}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(
            f"option 'paths': unknown field(s) {unknown} for embodiment {layout.name!r}; fields: {sorted(known)}"
        )
    resolved: dict[str, tuple[str, ...]] = {}
    for field in layout.fields:
        default = field.paths if isinstance(field, StateField) else (field.path,)
        value = given.get(field.name, default)
        if value is None or value == "" or value == ():
            required = isinstance(field, StateField) or field.required
            if required:
                raise ConfigError(f"option 'paths': field {field.name!r} of {layout.name!r} is required")
            resolved[field.name] = ()
            continue
        items = (value,) if isinstance(value, str) else tuple(value)
        if not all(isinstance(item, str) and item for item in items):
            raise ConfigError(f"option 'paths': field {field.name!r}: expected dotted path strings, got {value!r}")
        if isinstance(field, ImageField) and len(items) != 1:
            raise ConfigError(f"option 'paths': camera {field.name!r} takes one path, got {value!r}")
        resolved[field.name] = items
    return resolved, set(given)


def _parse_paths(paths: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if paths is None:
        return {}
    if isinstance(paths, Mapping):
        return dict(paths)
    if not isinstance(paths, str):
        raise ConfigError(f"option 'paths': expected a map or 'field=path,...' text, got {paths!r}")
    parsed: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in paths.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"option 'paths': expected 'field=path', got {item!r}")
        parts = [p.strip() for p in value.split("+") if p.strip()]
        parsed[name.strip()] = parts[0] if len(parts) == 1 else tuple(parts)
    return parsed
