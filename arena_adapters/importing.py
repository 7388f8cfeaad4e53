"""Resolving ``"package.module:attribute"`` strings to Python objects (``--policy`` flags)."""

from __future__ import annotations

import importlib
from typing import Any

from arena_adapters.errors import ConfigError


def import_object(spec: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute.

    Raises:
        ConfigError: the string is malformed, the module cannot be imported or lacks the attribute.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"expected 'package.module:attribute', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of {spec!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ConfigError(f"{spec!r}: {module_name!r} has no attribute {attribute!r}") from exc
    return target
