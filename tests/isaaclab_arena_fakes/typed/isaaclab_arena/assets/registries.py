"""``PolicyRegistry``: a singleton keyed by ``cls.name``; one ``PolicyCfg`` type per policy, both ways."""

from __future__ import annotations

import importlib
from typing import Any


class PolicyRegistry:
    _instance: PolicyRegistry | None = None

    def __new__(cls) -> PolicyRegistry:
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._components = {}
            instance._cfg_types = {}
            instance._policy_types_by_cfg_type = {}
            cls._instance = instance
        return cls._instance

    _components: dict[str, Any]
    _cfg_types: dict[type, type]
    _policy_types_by_cfg_type: dict[type, type]

    @staticmethod
    def _ensure_loaded() -> None:
        importlib.import_module("isaaclab_arena.policy")  # only Arena's own package, never third parties

    def is_registered(self, key: str, ensure_loaded: bool = True) -> bool:
        if ensure_loaded:
            self._ensure_loaded()
        return key in self._components

    def register_policy(self, policy_type: type, cfg_type: type) -> None:
        assert cfg_type not in self._policy_types_by_cfg_type, f"Policy config {cfg_type.__name__} already registered"
        assert policy_type.name not in self._components, f"component {policy_type.name} already registered"
        self._components[policy_type.name] = policy_type
        self._cfg_types[policy_type] = cfg_type
        self._policy_types_by_cfg_type[cfg_type] = policy_type

    def get_policy_cfg_type(self, policy_type: type) -> type:
        self._ensure_loaded()
        assert policy_type in self._cfg_types, f"Policy {policy_type.__name__} must register a PolicyCfg"
        return self._cfg_types[policy_type]

    def get_policy_type_for_cfg(self, cfg: Any) -> type:
        self._ensure_loaded()
        assert type(cfg) in self._policy_types_by_cfg_type, f"Policy config {type(cfg).__name__} is not registered"
        return self._policy_types_by_cfg_type[type(cfg)]

    def get_policy(self, name: str) -> type:
        self._ensure_loaded()
        assert name in self._components, f"component {name} not found, please check if requested component is registered"
        return self._components[name]
