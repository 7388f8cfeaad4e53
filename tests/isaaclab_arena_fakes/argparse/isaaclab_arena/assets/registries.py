"""``PolicyRegistry``: a singleton of classes by ``cls.name``; registration is optional (dotted paths work)."""

from __future__ import annotations

import importlib
from typing import Any


class PolicyRegistry:
    _components: dict[str, Any] = {}

    def is_registered(self, key: str, ensure_loaded: bool = True) -> bool:
        if ensure_loaded:
            importlib.import_module("isaaclab_arena.policy")
        return key in self._components

    def register(self, component: Any, key: str) -> None:
        assert key not in self._components, f"component {key} already registered"
        self._components[key] = component

    def get_policy(self, name: str) -> Any:
        importlib.import_module("isaaclab_arena.policy")
        assert name in self._components, f"component {name} not found, please check if requested component is registered"
        return self._components[name]
