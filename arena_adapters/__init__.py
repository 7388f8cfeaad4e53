"""arena-adapters: connect robot-policy evaluation runners to VLA policy servers in their native protocols.

Quick start::

    import arena_adapters as aa

    aa.available_adapters()                     # names from entry points, nothing imported
    policy = aa.load_policy("gr00t", endpoint="tcp://127.0.0.1:5555", execute_steps=8)
    actions = policy.get_action(obs)            # (num_envs, action_dim) on the obs device
    policy.reset(env_ids)                       # LongTensor, or None for all envs
    policy.close()

Plugin authors start at :mod:`arena_adapters.hookspecs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arena_adapters.errors import (
    ActionError,
    AdapterError,
    ConfigError,
    ObservationError,
    PluginError,
    ProtocolError,
    ServerError,
    TransportError,
    TransportTimeout,
    UnknownAdapterError,
    UnknownEnvironmentError,
)
from arena_adapters.hookspecs import hookimpl
from arena_adapters.importing import lazy_exports
from arena_adapters.options import Option
from arena_adapters.plugins import PluginRegistry, default_registry

if TYPE_CHECKING:
    from arena_adapters.policy import Policy, load_policy
    from arena_adapters.scheduler import ActionChunkScheduler

__getattr__ = lazy_exports(__name__, {"Policy": "policy", "load_policy": "policy",
                                      "ActionChunkScheduler": "scheduler"})
"""Imported on first use: they need torch, which processes such as reference servers never import."""


def available_adapters() -> list[str]:
    """Names of the installed adapters, read from entry-point metadata without importing plugins."""
    return default_registry().available_adapters()


__all__ = [
    "ActionChunkScheduler",
    "ActionError",
    "AdapterError",
    "ConfigError",
    "ObservationError",
    "Option",
    "PluginError",
    "PluginRegistry",
    "Policy",
    "ProtocolError",
    "ServerError",
    "TransportError",
    "TransportTimeout",
    "UnknownAdapterError",
    "UnknownEnvironmentError",
    "available_adapters",
    "default_registry",
    "hookimpl",
    "load_policy",
]
