"""``@register_policy`` (bare): key ``cls.name``; the config type comes from the one DIRECT ``PolicyBase[Cfg]`` base."""

from __future__ import annotations

from typing import get_args, get_origin

from isaaclab_arena.assets.registries import PolicyRegistry


def register_policy(cls: type) -> type:
    if PolicyRegistry().is_registered(cls.name, ensure_loaded=False):
        print(f"WARNING: Policy {cls.name} is already registered. Doing nothing.")
    else:
        PolicyRegistry().register_policy(cls, _cfg_type_of(cls))
    return cls


def _cfg_type_of(cls: type) -> type:
    from isaaclab_arena.policy.policy_base import PolicyBase, PolicyCfg

    # types.get_original_bases(cls) on Python >= 3.12: the bases as written, of this class only
    direct = [base for base in cls.__dict__.get("__orig_bases__", ()) if get_origin(base) is PolicyBase]
    assert len(direct) == 1, f"{cls.__name__} must directly inherit PolicyBase[ConcretePolicyCfg]"
    arguments = get_args(direct[0])
    assert len(arguments) == 1, f"{cls.__name__} must declare exactly one policy config"
    cfg_type = arguments[0]
    assert isinstance(cfg_type, type) and issubclass(cfg_type, PolicyCfg), (
        f"{cls.__name__} must use a concrete PolicyCfg subclass"
    )
    return cfg_type
