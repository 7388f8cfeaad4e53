"""Vectorized environments for ``arena-adapters eval``, plugged in by name.

An environment is a factory registered under the entry-point group ``arena_adapters.environments``::

    # pyproject.toml of a third-party package
    [project.entry-points."arena_adapters.environments"]
    pick_cube = "my_envs.pick:PickCubeEnv"

``factory(num_envs=..., device=..., **options)`` returns an object following
:class:`~arena_adapters.envs.base.VectorEnv` (Isaac Lab's ``ManagerBasedRLEnv`` contract). A factory
may declare its options as ``OPTIONS``, a tuple of :class:`~arena_adapters.options.Option`: they are
validated and converted (CLI strings included) before the call; ``arena-adapters eval --env NAME
--env-option KEY=VALUE`` passes them. The built-in ``reach`` environment is always available.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from arena_adapters.envs.base import VectorEnv, task_description_of
from arena_adapters.errors import ConfigError, PluginError, UnknownEnvironmentError
from arena_adapters.importing import import_object
from arena_adapters.options import Option, reject_unknown, resolve_options

ENTRY_POINT_GROUP = "arena_adapters.environments"
BUILTIN_ENVIRONMENTS: Mapping[str, str] = {"reach": "arena_adapters.envs.reach:ReachEnv"}


@dataclass(frozen=True)
class EnvironmentInfo:
    """An environment known by name, without importing it."""

    name: str
    target: str
    distribution: str


def environments() -> dict[str, EnvironmentInfo]:
    """Every environment by name: the built-ins, then entry points (a different target under a
    built-in name is ignored). Imports nothing."""
    found = {name: EnvironmentInfo(name, target, "arena-adapters") for name, target in BUILTIN_ENVIRONMENTS.items()}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in found:
            continue
        dist = entry_point.dist
        distribution = dist.metadata["Name"] if dist is not None else "?"
        found[entry_point.name] = EnvironmentInfo(entry_point.name, entry_point.value, distribution)
    return found


def available_environments() -> list[str]:
    """Sorted environment names."""
    return sorted(environments())


def environment_factory(name: str) -> Callable[..., Any]:
    """Import and return the factory of environment ``name``.

    Raises:
        UnknownEnvironmentError: no such environment (the message lists the valid names).
        PluginError: its module failed to import.
    """
    info = environments().get(name)
    if info is None:
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}; valid names: {', '.join(available_environments())}"
        )
    try:
        factory = import_object(info.target)
    except ConfigError as exc:
        raise PluginError(f"environment {name!r} ({info.distribution}) failed to load: {exc}") from exc
    if not callable(factory):
        raise PluginError(f"environment {name!r}: {info.target} is not callable")
    return factory  # type: ignore[no-any-return]


def environment_options(name: str) -> tuple[Option, ...]:
    """The options environment ``name`` declares (``OPTIONS`` on its factory)."""
    return tuple(getattr(environment_factory(name), "OPTIONS", ()))


def make_environment(name: str, *, num_envs: int, device: str = "cpu", **options: Any) -> VectorEnv:
    """Build environment ``name`` with ``num_envs`` envs on ``device``.

    Options are checked against the factory's ``OPTIONS`` when it declares them.

    Raises:
        UnknownEnvironmentError, PluginError: see :func:`environment_factory`.
        ConfigError: an unknown option or a bad value.
    """
    factory = environment_factory(name)
    declared = getattr(factory, "OPTIONS", None)
    if declared is not None:
        owner = f"environment {name!r}"
        reject_unknown(options, {option.name for option in declared}, owner)
        options = resolve_options(declared, options, owner)
    env = factory(num_envs=num_envs, device=device, **options)
    return env  # type: ignore[no-any-return]


__all__ = [
    "BUILTIN_ENVIRONMENTS",
    "ENTRY_POINT_GROUP",
    "EnvironmentInfo",
    "VectorEnv",
    "available_environments",
    "environment_factory",
    "environment_options",
    "environments",
    "make_environment",
    "task_description_of",
]
