"""Isaac Lab Arena, typed-config generation: one registered policy per installed adapter.

For the Arena whose ``PolicyBase`` is ``Generic[PolicyCfgT]`` and whose flags, legacy JSON jobs and
YAML experiments are all built from the policy's ``PolicyCfg`` dataclass. For adapter ``gr00t`` this
module offers ``Gr00tAdapterPolicy`` (registered as ``arena_adapters_gr00t``) and its config
``Gr00tAdapterPolicyCfg``; likewise ``OpenpiAdapterPolicy``/``arena_adapters_openpi``, and one for
every adapter installed, third parties' included (``arena-adapters list``)::

    python isaaclab_arena/evaluation/policy_runner.py \\
        --policy_type arena_adapters.integrations.isaaclab_typed.Gr00tAdapterPolicy \\
        --endpoint tcp://127.0.0.1:5555 --arena_preset droid --num_envs 4 --num_episodes 8 \\
        pick_and_place_maple_table --embodiment droid_abs_joint_pos   # environment subcommand LAST

    # YAML experiment: runs.<name>.policy
    policy:
      type: arena_adapters.integrations.isaaclab_typed.OpenpiAdapterPolicy
      endpoint: ws://127.0.0.1:8000
      arena_preset: pi05
      adapter_options: [max_concurrency=4]

Why one policy per adapter and not one generic policy: the registry allows a generic one (one
``PolicyCfg`` for one policy), but its config could only carry the adapter's options as an untyped
``NAME=VALUE`` list: dict fields are refused by the flag generator. Generated per adapter, every
declared option is a typed field (see :mod:`~arena_adapters.integrations.isaaclab_config` for the
mapping), so ``--help`` lists the adapter's options with defaults and choices, YAML values are
type-checked by Arena's composer, and each adapter gets the presets of Arena's own policy for its model
(``arena_preset``). ``adapter_options`` remains as the escape hatch (options of swapped parts).

How the registry rules are met: each class is created with ``types.new_class`` and the direct bases
``(AdapterPolicyBase, PolicyBase[<its own Cfg>])``, so ``@register_policy`` reads the config type
from ``__orig_bases__`` exactly as for a hand-written class; each config class belongs to one
policy. Classes are made on first attribute access of this module (``module.Class`` is how Arena
resolves a dotted path) and registered at once, so a dotted path works from every entry point. A
registered name (``arena_adapters_gr00t``) works once this module has registered its classes in the
process: :func:`register_all` does it, and :mod:`arena_adapters.integrations.isaaclab_launch` calls
it when Arena loads its policy package.

Lifetime: the adapter connects in the constructor (a dead server fails there, as Arena expects) and
``close()`` releases every socket and thread; it is idempotent, and also runs at interpreter exit
because ``policy_runner`` never calls it. ``is_remote`` stays False (Arena's runner would read the
undefined ``--remote_kill_on_exit`` otherwise).

``isaaclab_arena`` is imported only when a class is first asked for, never by importing this module.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arena_adapters.errors import AdapterError, UnknownAdapterError
from arena_adapters.integrations.isaaclab_config import load_policy_options, make_config_class
from arena_adapters.integrations.isaaclab_runtime import ArenaPolicyRuntime
from arena_adapters.plugins import PluginRegistry, default_registry
from arena_adapters.policy import declared_options, part_records

POLICY_SUFFIX = "AdapterPolicy"
CONFIG_SUFFIX = "AdapterPolicyCfg"
REGISTERED_NAME_PREFIX = "arena_adapters_"


@dataclass(frozen=True)
class TypedArenaApi:
    """The typed Arena names this module builds on.

    Attributes:
        policy_base: ``isaaclab_arena.policy.policy_base.PolicyBase`` (generic in its config).
        policy_cfg: ``isaaclab_arena.policy.policy_base.PolicyCfg``, the config marker dataclass.
        register_policy: ``isaaclab_arena.assets.register.register_policy``.
    """

    policy_base: Any
    policy_cfg: type
    register_policy: Callable[[type], type]


def typed_arena_api() -> TypedArenaApi:
    """Import the typed Arena API.

    Raises:
        ImportError: ``isaaclab_arena`` is missing, or is the older generation (no ``PolicyCfg``; use
            ``arena_adapters.isaaclab.AdapterPolicy`` there).
    """
    from isaaclab_arena.policy import policy_base

    policy_cfg = getattr(policy_base, "PolicyCfg", None)
    if policy_cfg is None:
        raise ImportError(
            "this isaaclab_arena is the older (argparse) generation: it has no PolicyCfg; use "
            "--policy_type arena_adapters.isaaclab.AdapterPolicy instead"
        )
    from isaaclab_arena.assets.register import register_policy

    return TypedArenaApi(policy_base.PolicyBase, policy_cfg, register_policy)


class AdapterPolicyBase(ArenaPolicyRuntime):
    """What every generated policy shares: build the adapter from the typed config.

    Concrete classes (one per adapter, made by :func:`policy_class`) set ``adapter`` and ``name``
    and list ``PolicyBase[TheirCfg]`` as their second direct base.

    Args:
        config: the policy's config (its ``PolicyCfg`` dataclass; ``Cfg(**dict)`` from a JSON job
            with plain strings for Enum fields works too).
    """

    adapter: str = ""
    name: str = ""
    _registry: PluginRegistry | None = None

    def __init__(self, config: Any) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # next in the MRO: Arena's PolicyBase
        self.config = config
        self._load_adapter(self.adapter, load_policy_options(config, self.adapter), self._registry)
        try:
            self.policy.connect()
        except BaseException:
            self.close()
            raise

    @property
    def is_remote(self) -> bool:
        """False: the server is never shut down from here, and ``close()`` releases the client."""
        return False


_classes: dict[tuple[Any, str], type] = {}


def class_names(adapter: str) -> tuple[str, str]:
    """The policy and config class names for ``adapter`` (``gr00t`` -> ``Gr00tAdapterPolicy``, ...Cfg)."""
    words = [word for word in "".join(c if c.isalnum() else " " for c in adapter).split() if word]
    stem = "".join(word[:1].upper() + word[1:] for word in words)
    if not stem or not stem[0].isalpha():
        stem = "A" + stem
    return stem + POLICY_SUFFIX, stem + CONFIG_SUFFIX


def registered_name(adapter: str) -> str:
    """The name a generated policy is registered under (``arena_adapters_gr00t``)."""
    return REGISTERED_NAME_PREFIX + "".join(c if c.isalnum() else "_" for c in adapter)


def policy_class(adapter: str, registry: PluginRegistry | None = None) -> type:
    """The registered typed Arena policy class for ``adapter``, made and registered on first use.

    Raises:
        ImportError: typed Arena is not importable.
        UnknownAdapterError, PluginError: no such adapter, or its plugin fails to load.
    """
    api = typed_arena_api()
    key = (api.policy_base, adapter)
    if key in _classes:
        return _classes[key]
    registry = registry or default_registry()
    record = registry.adapter(adapter)
    options = declared_options(part_records(registry, record, record.defaults)).values()
    policy_name, config_name = class_names(adapter)
    config_type = make_config_class(
        config_name, __name__, adapter, options, api.policy_cfg,
        doc=f"Config of {policy_name}: the options of adapter {adapter!r} (arena-adapters info {adapter}).",
    )

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(
            __module__=__name__,
            __qualname__=policy_name,
            __doc__=f"Adapter {adapter!r} as a typed Isaac Lab Arena policy ({registered_name(adapter)}).",
            adapter=adapter,
            name=registered_name(adapter),
            _registry=registry,
        )

    policy_type = types.new_class(policy_name, (AdapterPolicyBase, api.policy_base[config_type]), exec_body=body)
    api.register_policy(policy_type)
    _classes[key] = policy_type
    return policy_type


def register_all(registry: PluginRegistry | None = None) -> list[str]:
    """Make and register the policy of every installed adapter; return their registered names.

    An adapter whose plugin fails to load is skipped with a warning.
    """
    registry = registry or default_registry()
    names = []
    for adapter in registry.available_adapters():
        try:
            policy_class(adapter, registry)
        except AdapterError as error:
            warnings.warn(f"arena-adapters: no Arena policy for adapter {adapter!r}: {error}", stacklevel=2)
            continue
        names.append(registered_name(adapter))
    return names


def __getattr__(name: str) -> Any:
    """``Gr00tAdapterPolicy`` / ``Gr00tAdapterPolicyCfg``: the class of an installed adapter."""
    if not name.endswith((POLICY_SUFFIX, CONFIG_SUFFIX)) or name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    registry = default_registry()
    for adapter in registry.available_adapters():
        policy_name, config_name = class_names(adapter)
        if name == policy_name:
            return policy_class(adapter, registry)
        if name == config_name:
            return _config_type(policy_class(adapter, registry))
    known = ", ".join(class_names(adapter)[0] for adapter in registry.available_adapters())
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}: no installed adapter is named so; policies of "
        f"installed adapters: {known or '(none)'}"
    )


def _config_type(policy_type: type) -> type:
    for base in policy_type.__dict__.get("__orig_bases__", ()):
        arguments = getattr(base, "__args__", ())
        if arguments:
            return arguments[0]  # type: ignore[no-any-return]
    raise UnknownAdapterError(f"{policy_type.__name__} declares no config type")

