"""An adapter's declared options as a typed Isaac Lab Arena ``PolicyCfg`` dataclass, and back.

Typed Arena turns every field of a policy config into a flag (``--<field>``) and composes YAML
experiments against it with OmegaConf, so a field may only be a scalar (``int``, ``float``, ``str``,
``bool``), a ``str`` Enum, ``T | None`` of those, or ``list`` of them. :func:`config_fields` maps each
:class:`~arena_adapters.options.Option` onto that:

=============================================  ================================================
option                                         field
=============================================  ================================================
``int``/``float``/``str``/``bool``, default d   the same type, default d (``T | None`` when d is None)
required                                       the same type, no default (a required flag)
``choices`` of str (None allowed)              a ``str`` Enum whose member names are the values
                                               (OmegaConf reads a name, argparse a value)
``object``/``dict``/``list`` (a map, a path)   ``str | None = None``: the option's text form
                                               (``"180x320"``, ``"a=x,b=y"``, a YAML path); None
                                               keeps the adapter's default
``num_envs``                                   ``num_envs: int = 1``: Arena fills it from
                                               ``--num_envs`` / ``environment_builder.num_envs``
``device``                                     no field: actions follow the observations' device
                                               (Arena never fills a policy ``device`` in YAML runs)
=============================================  ================================================

Two fields are added to every config: ``arena_preset`` (the per-adapter settings of Arena's own policy
for that model, :data:`ARENA_PRESETS`) and ``adapter_options``, a ``list[str]`` of ``NAME=VALUE`` for
what no typed field covers (options of swapped parts, a value only the text form cannot express).
An option whose name is already an Arena flag (:data:`ARENA_FLAG_NAMES`) is renamed ``adapter_<name>``.
"""

from __future__ import annotations

import dataclasses
import enum
import keyword
from collections.abc import Iterable, Mapping
from typing import Any, cast

from arena_adapters.errors import ConfigError
from arena_adapters.options import Option

ARENA_PRESETS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "gr00t": {"droid": {"execute_steps": 32}},
    "openpi": {"pi05": {"execute_steps": 15}, "pi0": {"execute_steps": 10}},
}
"""Options that reproduce Arena's own remote policies, by adapter and preset name.

- ``gr00t``/``droid``: ``gr00t_remote_closedloop`` with the DROID config executes 32 of 32 actions.
- ``openpi``/``pi05`` and ``pi0``: ``Pi0RemotePolicy`` replays 15 (pi05) or 10 (pi0) actions per chunk.

Explicit options win over a preset's."""

ARENA_FLAG_NAMES: frozenset[str] = frozenset({
    # policy_runner / experiment_runner
    "policy_type", "num_steps", "num_episodes", "language_instruction", "video", "video_dir", "camera_video",
    "record_viewport_video", "record_camera_video", "output_base_dir", "serve_evaluation_report",
    "evaluation_report_port", "remote_kill_on_exit", "experiment_config", "eval_jobs_config",
    # the shared Arena parser and Isaac Lab's AppLauncher
    "seed", "env_spacing", "disable_fabric", "mimic", "distributed", "placement_seed", "solve_relations",
    "presets", "enable_cameras", "headless", "livestream", "experience", "rendering_mode", "kit_args",
    "xr", "verbose", "info", "enable_pinocchio", "visualizer", "environment",
    # environment sub-parsers (their values land in the same Namespace the policy config is read from)
    "embodiment", "object", "objects", "background", "hdr", "task", "scene", "teleop_device", "camera",
    "robot", "pick_up_object", "destination_location",
})
"""Flags Arena's runners or environment sub-parsers define. A policy field of the same name would clash
with the runner's flag, or silently take the environment's value: ``dataclass_from_cli`` copies every
Namespace attribute named like a field, and a sub-parser's ``--embodiment droid_abs_joint_pos`` is one."""

NUM_ENVS_DEFAULT = 1
"""Arena's ``--num_envs`` default, which a ``num_envs`` field's default must equal."""

PRESET_FIELD = "arena_preset"
EXTRA_OPTIONS_FIELD = "adapter_options"
_SKIPPED = frozenset({"device", "num_envs"})


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One field of a generated config and the option it carries.

    Attributes:
        name: the field name (and Arena flag).
        type: its annotation.
        field: the dataclass field (with its default).
        option: the adapter option it sets, or None for ``num_envs`` and the two added fields.
    """

    name: str
    type: Any
    field: Any
    option: Option | None


def config_fields(adapter: str, options: Iterable[Option], module: str, owner: str) -> list[ConfigField]:
    """The config fields for an adapter's options, required ones first.

    Args:
        adapter: the adapter name (picks the presets).
        options: its declared options (``declared_options(part_records(...)).values()``).
        module: the module generated Enums claim to live in.
        owner: the config class name; generated Enums are nested in it (``Owner.Strategy``).
    """
    fields: list[ConfigField] = []
    for option in options:
        if option.name in _SKIPPED:
            continue
        name = f"adapter_{option.name}" if option.name in ARENA_FLAG_NAMES else option.name
        annotation, default = _field_type(option, module, f"{owner}.{_camel(name)}")
        field = dataclasses.field() if option.required else dataclasses.field(default=default)
        fields.append(ConfigField(name, annotation, field, option))
    fields.sort(key=lambda item: item.option is None or not item.option.required)
    fields.append(ConfigField("num_envs", int, dataclasses.field(default=NUM_ENVS_DEFAULT), None))
    presets = tuple(ARENA_PRESETS.get(adapter, {}))
    if presets:
        preset_enum = _str_enum(module, f"{owner}.ArenaPreset", presets)
        fields.append(ConfigField(PRESET_FIELD, preset_enum | None, dataclasses.field(default=None), None))
    fields.append(ConfigField(EXTRA_OPTIONS_FIELD, list[str], dataclasses.field(default_factory=list), None))
    return fields


def make_config_class(
    class_name: str, module: str, adapter: str, options: Iterable[Option], base: type, doc: str = ""
) -> type:
    """A ``@dataclass`` subclass of ``base`` (Arena's ``PolicyCfg``) with :func:`config_fields`."""
    fields = config_fields(adapter, options, module, class_name)
    cls = dataclasses.make_dataclass(
        class_name,
        [(item.name, item.type, item.field) for item in fields],
        bases=(base,),
        namespace={"__doc__": doc, "__module__": module, "__qualname__": class_name},
    )
    cls.__arena_fields__ = {item.name: item for item in fields}  # type: ignore[attr-defined]
    for item in fields:
        for member_type in (item.type, *getattr(item.type, "__args__", ())):
            if isinstance(member_type, type) and issubclass(member_type, enum.Enum):
                setattr(cls, member_type.__name__, member_type)  # importable as module.Cfg.Enum
    return cls


def load_policy_options(config: Any, adapter: str) -> dict[str, Any]:
    """The ``load_policy`` keyword options a config instance stands for.

    Enum members become their values, ``None`` means "the adapter's default" and is left out, the
    preset's options come first and every explicit option overrides them, ``adapter_options`` last.

    Raises:
        ConfigError: an unknown preset, or an ``adapter_options`` item that is not ``NAME=VALUE``.
    """
    by_name: Mapping[str, ConfigField] = type(config).__arena_fields__
    options: dict[str, Any] = {}
    preset = _plain(getattr(config, PRESET_FIELD, None))
    if preset is not None:
        presets = ARENA_PRESETS.get(adapter, {})
        if preset not in presets:
            raise ConfigError(f"{PRESET_FIELD}: expected one of {sorted(presets)} for adapter {adapter!r}, "
                              f"got {preset!r}")
        options.update(presets[preset])
    for name, item in by_name.items():
        value = _plain(getattr(config, name))
        if item.option is not None and value is not None:
            options[item.option.name] = value
    num_envs = getattr(config, "num_envs", None)
    if num_envs is not None:
        options["num_envs"] = num_envs
    options.update(parse_extra_options(getattr(config, EXTRA_OPTIONS_FIELD, None) or ()))
    return options


def parse_extra_options(items: Iterable[Any]) -> dict[str, str]:
    """``["timeout=5", "paths=a=x"]`` -> ``{"timeout": "5", "paths": "a=x"}``.

    Raises:
        ConfigError: an item without ``=`` (for instance an environment name swallowed by the flag).
    """
    if isinstance(items, str):
        items = [items]
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{EXTRA_OPTIONS_FIELD}: expected NAME=VALUE items, got {item!r} (on the command line, end "
                f"--{EXTRA_OPTIONS_FIELD} with another flag before the environment subcommand)"
            )
        parsed[key.strip().replace("-", "_")] = value
    return parsed


def _field_type(option: Option, module: str, enum_qualname: str) -> tuple[Any, Any]:
    default = None if option.required else option.default
    choices = option.choices
    if choices is not None:
        values = tuple(choice for choice in choices if choice is not None)
        if values and all(isinstance(choice, str) for choice in values):
            enum_type = _str_enum(module, enum_qualname, values)
            annotation = enum_type if default is not None or option.required else enum_type | None
            return annotation, None if default is None else enum_type(default)
    if option.type in (int, float, str, bool):
        if default is None and not option.required:
            return option.type | None, None
        return option.type, default
    # object, dict, list, tuple...: the option's text form, or None for the adapter's own default
    if isinstance(default, str):
        return str, default
    return str | None, None


class TextEnum(str, enum.Enum):
    """Base of the generated str Enums: member name == value, and ``str()`` is the value (for ``--help``)."""

    def __str__(self) -> str:
        return str.__str__(self)


def _str_enum(module: str, qualname: str, values: Iterable[str]) -> type[enum.Enum]:
    members = [(value, value) for value in values]
    created = TextEnum(qualname.rpartition(".")[2], members, module=module, qualname=qualname)  # type: ignore[call-overload]
    return cast("type[enum.Enum]", created)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _camel(name: str) -> str:
    words = [word for word in name.replace("-", "_").split("_") if word]
    camel = "".join(word[:1].upper() + word[1:] for word in words) or "Option"
    return camel if camel.isidentifier() and not keyword.iskeyword(camel) else f"Option{camel}"
