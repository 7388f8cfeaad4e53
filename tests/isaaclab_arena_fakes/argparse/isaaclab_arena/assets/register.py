"""``@register_policy``: keyed by ``cls.name``; a duplicate only warns."""

from __future__ import annotations

from isaaclab_arena.assets.registries import PolicyRegistry


def register_policy(cls: type) -> type:
    if PolicyRegistry().is_registered(cls.name, ensure_loaded=False):
        print(f"WARNING: Policy {cls.name} is already registered. Doing nothing.")
    else:
        PolicyRegistry().register(cls, cls.name)
    return cls
