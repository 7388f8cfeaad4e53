"""Embodiment specs: which env observations become which GR00T keys, and how replies become env actions.

A spec is read from a dict or a YAML/JSON file shaped like this (every field but ``cameras``/``state``
may be left out; names/horizons left out are read from the server's ``get_modality_config``)::

    format: nested                 # "flat" (--use-sim-policy-wrapper servers) or "nested" (default)
    image_size: [180, 320]         # (height, width) on the wire; omit to send images at env size
    cameras:                       # wire camera -> observation path (or a list of paths: the names
      exterior_image_1_left: camera_obs.external_camera_rgb   # then come from the server, in order)
      wrist_image_left: camera_obs.wrist_camera_rgb
    state:                         # wire state group -> path, or {path, indices | joints}
      joint_position: {path: policy.joint_pos, indices: [0, 1, 2, 3, 4, 5, 6]}
      gripper_position: policy.gripper_pos
    state_joint_names:             # joint order of observation paths, for ``joints:`` selections
      policy.joint_pos: [panda_joint1, panda_joint2, ...]   # a list, {name: index}, or a YAML file
    language_key: annotation.language.language_instruction
    horizons: {video: 1, state: 1, action: 32}
    action:                        # wire action group -> dim, or {dim, indices | joints, binarize}
      joint_position: 7            # groups are concatenated in this order into the env action,
      gripper_position: {dim: 1, binarize: 0.5}     # or scattered to ``indices`` of it
    action_dim: 8                  # env action size (default: the groups' total / max index + 1)
    action_joint_names: [...]      # env action joint order, for ``joints:`` selections

Joint-space YAML files in Isaac Lab Arena's layout (``joints: {name: index}`` or ``joints: [names]``)
can be named directly as ``state_joint_names``/``action_joint_names`` values.

Horizons above 1 repeat the current frame/state ``T`` times (Isaac Lab observations carry no history).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arena_adapters.errors import ConfigError
from arena_adapters_gr00t import protocol
from arena_adapters_gr00t.modality import ModalityConfig


@dataclass(frozen=True)
class CameraSpec:
    """One camera: the observation path of its ``(N, H, W, 3)`` uint8 images and its wire name."""

    path: str
    wire: str | None = None


@dataclass(frozen=True)
class StateSpec:
    """One state group: observation path of an ``(N, J)`` tensor, optional columns, wire name."""

    path: str
    wire: str | None = None
    indices: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ActionGroupSpec:
    """One action group of the reply and where it goes in the env action.

    Attributes:
        wire: the action key (without ``action.``).
        dim: its expected last dimension (``None``: any).
        indices: env action columns it fills (``None``: the next ``dim`` columns, in group order).
        binarize: if set, values become 1.0 above this threshold and 0.0 otherwise (grippers).
    """

    wire: str
    dim: int | None = None
    indices: tuple[int, ...] | None = None
    binarize: float | None = None


@dataclass(frozen=True)
class EmbodimentSpec:
    """What a GR00T translator pair needs to know about an embodiment (see the module docstring)."""

    format: str = protocol.NESTED
    cameras: tuple[CameraSpec, ...] = ()
    states: tuple[StateSpec, ...] = ()
    language_key: str | None = None
    image_size: tuple[int, int] | None = None
    video_horizon: int | None = None
    state_horizon: int | None = None
    action_horizon: int | None = None
    actions: tuple[ActionGroupSpec, ...] | None = None
    action_dim: int | None = None
    discovered: bool = field(default=False, compare=False)

    def with_format(self, fmt: str | None) -> EmbodimentSpec:
        """The spec with another observation format (``None`` keeps it)."""
        if fmt is None:
            return self
        if fmt not in protocol.FORMATS:
            raise ConfigError(f"option 'format': expected one of {list(protocol.FORMATS)}, got {fmt!r}")
        return replace(self, format=fmt)

    # ----------------------------------------------------------------------- key names on the wire

    def video_key(self, wire: str) -> str:
        return f"video.{wire}" if self.format == protocol.FLAT else wire

    def state_key(self, wire: str) -> str:
        return f"state.{wire}" if self.format == protocol.FLAT else wire

    def action_key(self, wire: str) -> str:
        return f"action.{wire}" if self.format == protocol.FLAT else wire

    # --------------------------------------------------------------------------- discovery

    def resolve(self, configs: Mapping[str, ModalityConfig]) -> EmbodimentSpec:
        """Fill names and horizons the spec leaves out from the server's modality configs, and check
        that the spec covers every camera/state key the server requires.

        Raises:
            ConfigError: a name is neither configured nor described by the server, or the server
                requires a camera/state group that the spec does not provide.
        """
        video, state = configs.get(protocol.VIDEO), configs.get(protocol.STATE)
        language = configs.get(protocol.LANGUAGE)
        language_key = self.language_key
        if language_key is None and language is not None and language.modality_keys:
            language_key = language.modality_keys[0]
        if language_key is None:
            raise ConfigError("the GR00T language key is not configured (language_key) and the server "
                              "describes no language modality")
        return replace(
            self.resolve_actions(configs),
            cameras=_named(self.cameras, video, protocol.VIDEO),
            states=_named(self.states, state, protocol.STATE),
            language_key=language_key,
            video_horizon=self.video_horizon or _horizon(video) or 1,
            state_horizon=self.state_horizon or _horizon(state) or 1,
        )

    def resolve_actions(self, configs: Mapping[str, ModalityConfig]) -> EmbodimentSpec:
        """Fill the action groups and horizon the spec leaves out from the server's action config."""
        action = configs.get(protocol.ACTION)
        actions = self.actions
        if actions is None and action is not None and action.modality_keys:
            actions = tuple(ActionGroupSpec(k) for k in action.short_keys(protocol.ACTION))
        return replace(self, actions=actions, action_horizon=self.action_horizon or _horizon(action),
                       discovered=bool(configs))


def _horizon(config: ModalityConfig | None) -> int | None:
    return config.horizon if config is not None and config.delta_indices else None


def _named(items: tuple[Any, ...], config: ModalityConfig | None, modality: str) -> tuple[Any, ...]:
    server_keys = config.short_keys(modality) if config is not None else ()
    unnamed = [item for item in items if item.wire is None]
    if unnamed:
        if not server_keys:
            raise ConfigError(f"{modality} entries {[i.path for i in unnamed]} have no wire names and the "
                              f"server describes no {modality} modality: name them in the config")
        if len(items) != len(server_keys) or len(unnamed) != len(items):
            raise ConfigError(f"{modality}: give every entry a wire name, or list exactly one path per server "
                              f"key {list(server_keys)} (got {len(items)} paths)")
        items = tuple(replace(item, wire=key) for item, key in zip(items, server_keys, strict=True))
    provided = {item.wire for item in items}
    missing = [key for key in server_keys if key not in provided]
    if missing:
        raise ConfigError(f"the server requires {modality} keys {list(server_keys)}; the config does not "
                          f"provide {missing} (it maps {sorted(k for k in provided if k)})")
    return items


# ------------------------------------------------------------------------------------ loading


def load_spec(config: Mapping[str, Any] | str | Path | EmbodimentSpec) -> EmbodimentSpec:
    """Build a spec from a dict, a YAML/JSON file path, or return a spec unchanged.

    Raises:
        ConfigError: the file cannot be read, or a field has the wrong shape (the message names it).
    """
    if isinstance(config, EmbodimentSpec):
        return config
    base = Path(".")
    if isinstance(config, (str, Path)):
        path = Path(config)
        config = _read_file(path, "option 'config'")
        base = path.parent
    if not isinstance(config, Mapping):
        raise ConfigError(f"option 'config': expected a dict or a YAML file path, got {type(config).__name__}")
    return _parse(config, base)


_KNOWN_KEYS = {
    "format", "image_size", "target_image_size", "cameras", "state", "state_joint_names", "language_key",
    "horizons", "action_horizon", "action", "action_dim", "action_joint_names",
}


def _parse(config: Mapping[str, Any], base: Path) -> EmbodimentSpec:
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"GR00T embodiment config: unknown field(s) {unknown}; known: {sorted(_KNOWN_KEYS)}")
    fmt = config.get("format", protocol.NESTED)
    if fmt not in protocol.FORMATS:
        raise ConfigError(f"GR00T embodiment config 'format': expected one of {list(protocol.FORMATS)}, got {fmt!r}")
    horizons = config.get("horizons") or {}
    if not isinstance(horizons, Mapping):
        raise ConfigError(f"GR00T embodiment config 'horizons': expected a map, got {horizons!r}")
    state_names = {
        str(path): _joint_order(names, base, f"state_joint_names[{path!r}]")
        for path, names in (config.get("state_joint_names") or {}).items()
    }
    action_names = (
        _joint_order(config["action_joint_names"], base, "action_joint_names")
        if config.get("action_joint_names") is not None else None
    )
    actions = None if config.get("action") is None else _action_groups(config["action"], action_names)
    action_dim = _positive_int(config.get("action_dim"), "action_dim")
    if actions is not None and action_dim is None and any(g.indices is not None for g in actions):
        action_dim = max(max(g.indices or (0,)) for g in actions) + 1
    return EmbodimentSpec(
        format=fmt,
        cameras=_cameras(config.get("cameras")),
        states=_states(config.get("state"), state_names),
        language_key=config.get("language_key"),
        image_size=parse_image_size(config.get("image_size", config.get("target_image_size"))),
        video_horizon=_positive_int(horizons.get("video"), "horizons.video"),
        state_horizon=_positive_int(horizons.get("state"), "horizons.state"),
        action_horizon=_positive_int(horizons.get("action", config.get("action_horizon")), "horizons.action"),
        actions=actions,
        action_dim=action_dim,
    )


def _read_file(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {str(path)!r}: {exc}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:
        raise ConfigError(f"{what}: {str(path)!r} is not valid YAML/JSON: {exc}") from None


def parse_image_size(value: Any) -> tuple[int, int] | None:
    """``(height, width)`` from ``[H, W]``, ``[H, W, 3]``, ``"180x320"`` or ``"180,320"``; ``None`` stays."""
    if value is None or value == "":
        return None
    items: Sequence[Any]
    if isinstance(value, str):
        items = value.replace("x", ",").replace("X", ",").split(",")
    elif isinstance(value, Sequence):
        items = value
    else:
        raise ConfigError(f"image_size: expected [height, width], got {value!r}")
    try:
        numbers = [int(v) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(f"image_size: expected [height, width], got {value!r}") from None
    if len(numbers) not in (2, 3) or min(numbers[:2]) < 1 or (len(numbers) == 3 and numbers[2] != 3):
        raise ConfigError(f"image_size: expected [height, width] (or [height, width, 3]), got {value!r}")
    return numbers[0], numbers[1]


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"GR00T embodiment config {name!r}: expected an int >= 1, got {value!r}")
    return value


def _cameras(value: Any) -> tuple[CameraSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        return tuple(CameraSpec(path=_path(p, f"cameras.{w}"), wire=str(w)) for w, p in value.items())
    if isinstance(value, Sequence):
        return tuple(CameraSpec(path=_path(p, "cameras[]")) for p in value)
    raise ConfigError(f"GR00T embodiment config 'cameras': expected a map or a list of paths, got {value!r}")


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"GR00T embodiment config {where!r}: expected an observation path, got {value!r}")
    return value


def _states(value: Any, joint_names: Mapping[str, dict[str, int]]) -> tuple[StateSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_state(None, item, joint_names) for item in value)
    if isinstance(value, Mapping):
        return tuple(_state(str(wire), item, joint_names) for wire, item in value.items())
    raise ConfigError(f"GR00T embodiment config 'state': expected a map or a list, got {value!r}")


def _state(wire: str | None, item: Any, joint_names: Mapping[str, dict[str, int]]) -> StateSpec:
    where = f"state.{wire}" if wire else "state[]"
    if isinstance(item, str):
        return StateSpec(path=item, wire=wire)
    if not isinstance(item, Mapping) or "path" not in item:
        raise ConfigError(f"GR00T embodiment config {where!r}: expected a path or {{path, indices|joints}}, "
                          f"got {item!r}")
    path = _path(item["path"], where)
    indices = _indices(item, joint_names.get(path), where, f"state_joint_names[{path!r}]")
    return StateSpec(path=path, wire=wire, indices=indices)


def _indices(item: Mapping[str, Any], names: Mapping[str, int] | None, where: str, names_field: str
             ) -> tuple[int, ...] | None:
    if "indices" in item and "joints" in item:
        raise ConfigError(f"GR00T embodiment config {where!r}: give indices or joints, not both")
    if item.get("indices") is not None:
        indices = item["indices"]
        if not isinstance(indices, Sequence) or not all(isinstance(i, int) and i >= 0 for i in indices):
            raise ConfigError(f"GR00T embodiment config {where}.indices: expected ints >= 0, got {indices!r}")
        return tuple(indices)
    if item.get("joints") is not None:
        if names is None:
            raise ConfigError(f"GR00T embodiment config {where}.joints: selecting joints by name needs {names_field}")
        missing = [j for j in item["joints"] if j not in names]
        if missing:
            raise ConfigError(f"GR00T embodiment config {where}.joints: unknown joints {missing}; {names_field} "
                              f"has {list(names)}")
        return tuple(names[j] for j in item["joints"])
    return None


def _joint_order(value: Any, base: Path, where: str) -> dict[str, int]:
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() or not (base / value).exists() else base / value
        loaded = _read_file(path, where)
        value = loaded.get("joints", loaded) if isinstance(loaded, Mapping) else loaded
    if isinstance(value, Mapping):
        if not all(isinstance(i, int) for i in value.values()):
            raise ConfigError(f"GR00T embodiment config {where}: a joint map must give an int index per name")
        return {str(k): int(i) for k, i in value.items()}
    if isinstance(value, Sequence):
        return {str(name): i for i, name in enumerate(value)}
    raise ConfigError(f"GR00T embodiment config {where}: expected a list of joint names, a {{name: index}} map "
                      f"or a YAML file, got {value!r}")


def _action_groups(value: Any, joint_names: Mapping[str, int] | None) -> tuple[ActionGroupSpec, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(ActionGroupSpec(wire=str(w)) for w in value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"GR00T embodiment config 'action': expected a map of group -> dim, got {value!r}")
    groups = []
    for wire, item in value.items():
        where = f"action.{wire}"
        if item is None or (isinstance(item, int) and not isinstance(item, bool)):
            groups.append(ActionGroupSpec(wire=str(wire), dim=_positive_int(item, where)))
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"GR00T embodiment config {where!r}: expected a dim or {{dim, indices|joints}}, "
                              f"got {item!r}")
        indices = _indices(item, joint_names, where, "action_joint_names")
        dim = _positive_int(item.get("dim"), f"{where}.dim")
        if indices is not None and dim is not None and dim != len(indices):
            raise ConfigError(f"GR00T embodiment config {where!r}: dim {dim} != {len(indices)} indices")
        binarize = item.get("binarize")
        if binarize is not None and not isinstance(binarize, (int, float)):
            raise ConfigError(f"GR00T embodiment config {where}.binarize: expected a number, got {binarize!r}")
        groups.append(ActionGroupSpec(
            wire=str(wire),
            dim=dim if dim is not None else (len(indices) if indices is not None else None),
            indices=indices,
            binarize=None if binarize is None else float(binarize),
        ))
    return tuple(groups)
