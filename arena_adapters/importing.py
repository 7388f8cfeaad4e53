"""Resolving ``"package.module:attribute"`` strings to Python objects (``--policy`` flags), and
packages whose exports are imported on first use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
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


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) for ``package``: ``package.name`` imports the submodule
    ``exports[name]`` of ``package`` on first use (then caches the attribute in the package).

    For names whose modules need torch, which processes such as reference servers never import::

        __getattr__ = lazy_exports(__name__, {"Policy": "policy", "load_policy": "policy"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
