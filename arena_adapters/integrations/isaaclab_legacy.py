"""Isaac Lab Arena, older ("argparse") generation: any adapter as one Arena policy, :class:`AdapterPolicy`.

For the Arena whose ``PolicyBase`` has ``add_args_to_parser``/``from_args``/``from_dict``/``config_class``
(up to upstream af4c882, and the ``EAOZONE/IsaacLab-Arena`` fork). Run its policy runner with::

    python isaaclab_arena/evaluation/policy_runner.py --policy_type arena_adapters.isaaclab.AdapterPolicy \\
        --adapter gr00t --endpoint tcp://127.0.0.1:5555 --execute_steps 8 --num_envs 64 ... <environment>

Adapter flags go before the environment subcommand (argparse hands everything after it to the
environment's sub-parser). Every option of the chosen adapter is a flag (``arena-adapters info NAME``
lists them), spelled with underscores like Arena's own flags; an option whose flag Arena already uses
(``--device``, ...) is given as ``--adapter_option NAME=VALUE``. In an Arena eval-jobs config, use the
config dataclass fields instead (``{"adapter": "gr00t", "endpoint": "...", "options": {"execute_steps": 8}}``;
other keys are taken as options too).

:class:`AdapterPolicy` subclasses Arena's ``PolicyBase`` when ``isaaclab_arena`` can be imported and
works the same without it (for tests and other runners). When Arena's registry module is already
loaded, it is also registered as ``arena_adapters``, so ``--policy_type arena_adapters`` works once this
module has been imported (see :mod:`arena_adapters.integrations.isaaclab_launch`). Neither ``isaaclab``
nor ``isaaclab_arena`` is ever needed by arena-adapters itself. The typed-config Arena uses
:mod:`arena_adapters.integrations.isaaclab_typed` instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.adapter_options import adapter_options, parse_key_values, split_part_flags
from arena_adapters.integrations.isaaclab_runtime import ArenaPolicyRuntime
from arena_adapters.options import Option
from arena_adapters.plugins import PluginRegistry


class StandalonePolicyBase:
    """What :class:`AdapterPolicy` relies on from Arena's ``PolicyBase``, for use without Arena."""

    config_class: type | None = None

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> Any:
        """Build the policy from a dict of its ``config_class`` fields."""
        if cls.config_class is None:
            raise NotImplementedError(f"{cls.__name__} must define 'config_class' to use from_dict()")
        return cls(cls.config_class(**config_dict))

    def reset(self, env_ids: torch.Tensor | None = None) -> None:
        """Reset the policy (nothing by default)."""

    def close(self) -> None:
        """Release resources (nothing by default)."""

    def set_task_description(self, task_description: str | None) -> str | None:
        """Remember the task description."""
        self.task_description = task_description
        return self.task_description

    def has_length(self) -> bool:
        """Not a recording."""
        return False

    def length(self) -> int | None:
        """Not a recording."""
        return None

    @property
    def is_remote(self) -> bool:
        """Not remote by default."""
        return False


def arena_policy_base() -> type:
    """Arena's ``PolicyBase`` if ``isaaclab_arena`` imports, else :class:`StandalonePolicyBase`."""
    try:
        from isaaclab_arena.policy.policy_base import PolicyBase
    except Exception:  # absent, or present but unusable outside a running simulation app
        return StandalonePolicyBase
    return PolicyBase  # type: ignore[no-any-return]


_PolicyBase: Any = arena_policy_base()


@dataclass
class AdapterPolicyConfig:
    """How to build an :class:`AdapterPolicy`.

    Attributes:
        adapter: the adapter name (``gr00t``, ``openpi``, ``openvla``, ``local``, or a third party's).
        endpoint: the policy server address (the adapter's ``endpoint`` option), if it has one.
        options: the adapter's other options (``execute_steps``, ``timeout``, part swaps...).
        num_envs: the number of envs (filled in by Arena's eval runner; checked against observations).
        instruction: a fixed task instruction; by default the one Arena sets with ``set_task_description``.
    """

    adapter: str
    endpoint: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    num_envs: int | None = None
    instruction: str | None = None

    def load_policy_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~arena_adapters.load_policy`."""
        kwargs = dict(self.options)
        for name in ("endpoint", "num_envs", "instruction"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs


_OPTION_DEST = "adapter_option__"
_ARENA_FIXED = ("endpoint",)


class AdapterPolicy(ArenaPolicyRuntime, _PolicyBase):
    """An arena-adapters :class:`~arena_adapters.Policy` behind Arena's policy interface.

    Args:
        config: an :class:`AdapterPolicyConfig` (or a dict of its fields).
        registry: the plugin registry (default: the process-wide one).
    """

    name = "arena_adapters"
    config_class = AdapterPolicyConfig

    def __init__(self, config: AdapterPolicyConfig | Mapping[str, Any], registry: PluginRegistry | None = None) -> None:
        if isinstance(config, Mapping):
            config = _config_from_mapping(config)
        super().__init__(config)
        self.config: AdapterPolicyConfig = config
        self._load_adapter(config.adapter, config.load_policy_kwargs(), registry)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> AdapterPolicy:
        """Build from a dict: config fields as such, any other key as an adapter option."""
        return cls(_config_from_mapping(config_dict))

    @property
    def is_remote(self) -> bool:
        """True, so that Arena's policy runner calls :meth:`shutdown_remote` at the end."""
        return True

    def shutdown_remote(self, kill_server: bool = False) -> None:
        """Arena's end-of-run hook: close the connection. The server is never killed from here."""
        self.close()

    # ------------------------------------------------------------------ construction from CLI

    @staticmethod
    def add_args_to_parser(
        parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
    ) -> argparse.ArgumentParser:
        """Add ``--adapter``, ``--endpoint``, ``--adapter_option`` and the flags of the adapter named
        by ``--adapter`` in ``argv`` (default ``sys.argv``) to Arena's parser."""
        group = parser.add_argument_group("arena-adapters policy", "a policy server reached through an adapter")
        group.add_argument("--adapter", required=True, help="adapter name (arena-adapters list)")
        taken = set(getattr(parser, "_option_string_actions", {}))
        if "--endpoint" not in taken:
            group.add_argument("--endpoint", default=None, help="policy server address")
        group.add_argument("--adapter_option", action="append", default=None, metavar="NAME=VALUE",
                           help="an adapter option (repeatable), also for options whose flag Arena uses")
        if "--remote_kill_on_exit" not in taken:
            # Arena's runner reads args.remote_kill_on_exit for remote policies.
            group.add_argument("--remote_kill_on_exit", action="store_true", help=argparse.SUPPRESS)
        words = list(sys.argv[1:] if argv is None else argv)
        name = _peek(words, "--adapter")
        if name:
            parts, _ = split_part_flags(words)
            for option in adapter_options(name, parts):
                _add_option_flag(group, option, taken)
        return parser

    @staticmethod
    def from_args(args: argparse.Namespace) -> AdapterPolicy:
        """Build from Arena's parsed arguments (see :meth:`add_args_to_parser`)."""
        options = parse_key_values(getattr(args, "adapter_option", None), "--adapter_option")
        for key, value in vars(args).items():
            if key.startswith(_OPTION_DEST) and value is not None:
                options[key[len(_OPTION_DEST):]] = value
        endpoint = options.pop("endpoint", None) or getattr(args, "endpoint", None)
        instruction = options.pop("instruction", None)
        num_envs = getattr(args, "num_envs", None)
        return AdapterPolicy(
            AdapterPolicyConfig(
                adapter=args.adapter,
                endpoint=endpoint,
                options=options,
                num_envs=num_envs if isinstance(num_envs, int) else None,
                instruction=instruction,
            )
        )


def _config_from_mapping(values: Mapping[str, Any]) -> AdapterPolicyConfig:
    fields = {f.name for f in dataclasses.fields(AdapterPolicyConfig)}
    if "adapter" not in values:
        raise ConfigError("AdapterPolicy config: 'adapter' is required")
    known = {key: value for key, value in values.items() if key in fields}
    extra = {key: value for key, value in values.items() if key not in fields}
    known["options"] = {**dict(known.get("options") or {}), **extra}
    return AdapterPolicyConfig(**known)


def _peek(words: Sequence[str], flag: str) -> str | None:
    peeker = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peeker.add_argument(flag, default=None)
    namespace, _ = peeker.parse_known_args(list(words))
    value = getattr(namespace, flag.lstrip("-").replace("-", "_"))
    return value if isinstance(value, str) else None


def _add_option_flag(group: argparse._ArgumentGroup, option: Option, taken: set[str]) -> None:
    if option.name in _ARENA_FIXED or option.name in ("num_envs", "device"):
        return
    underscored = "--" + option.name
    dashed = "--" + option.name.replace("_", "-")
    flags = [flag for flag in dict.fromkeys((underscored, dashed)) if flag not in taken]
    if underscored not in flags:
        return
    kwargs: dict[str, Any] = {"dest": _OPTION_DEST + option.name, "default": None, "help": option.describe()}
    if option.type is bool:
        kwargs.update(nargs="?", const="true")
    group.add_argument(*flags, **kwargs)
    taken.update(flags)


def register_with_arena(import_registry: bool = False) -> bool:
    """Register :class:`AdapterPolicy` as ``arena_adapters`` in the older Arena's ``PolicyRegistry``.

    Only for the older generation's ``PolicyBase``, and only when Arena's registry module is already
    loaded, unless ``import_registry`` (importing it early could load Isaac Sim modules before the
    simulation app starts). Returns whether it is registered now.
    """
    if not hasattr(_PolicyBase, "add_args_to_parser"):
        return False
    try:
        if import_registry:
            import isaaclab_arena.assets.register  # noqa: F401
        register_module = sys.modules.get("isaaclab_arena.assets.register")
        if register_module is None:
            return False
        from isaaclab_arena.assets.registries import PolicyRegistry

        if not PolicyRegistry().is_registered(AdapterPolicy.name, ensure_loaded=False):
            register_module.register_policy(AdapterPolicy)
        return bool(PolicyRegistry().is_registered(AdapterPolicy.name, ensure_loaded=False))
    except Exception:  # an Arena whose registry differs: the dotted path keeps working
        return False


register_with_arena()
