"""Isaac Lab Arena integration: any adapter as an Arena policy.

Run Arena's policy runner with::

    python isaaclab_arena/evaluation/policy_runner.py --policy_type arena_adapters.isaaclab.AdapterPolicy \\
        --adapter gr00t --endpoint tcp://127.0.0.1:5555 --execute_steps 8 --num_envs 64 ... <environment>

Every option of the chosen adapter is a flag (``arena-adapters info NAME`` lists them), spelled with
underscores like Arena's own flags; an option whose flag Arena already uses (``--device``, ...) is
given as ``--adapter_option NAME=VALUE``. In an Arena eval-jobs config, use the config dataclass
fields instead (``{"adapter": "gr00t", "endpoint": "...", "options": {"execute_steps": 8}}``; other
keys are taken as options too).

:class:`AdapterPolicy` subclasses Arena's ``PolicyBase`` when ``isaaclab_arena`` can be imported and
works the same without it (for tests and other runners). Neither ``isaaclab`` nor ``isaaclab_arena``
is ever needed by arena-adapters itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.evaluation.adapter_options import adapter_options, parse_key_values, split_part_flags
from arena_adapters.options import Option
from arena_adapters.plugins import PluginRegistry
from arena_adapters.policy import Policy, load_policy


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


class AdapterPolicy(_PolicyBase):  # type: ignore[misc]
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
        self.task_description: str | None = config.instruction
        self.policy: Policy = load_policy(config.adapter, registry=registry, **config.load_policy_kwargs())
        self._checked_action_width = False

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> AdapterPolicy:
        """Build from a dict: config fields as such, any other key as an adapter option."""
        return cls(_config_from_mapping(config_dict))

    # ------------------------------------------------------------------ Arena's interface

    def get_action(self, env: Any, observation: Mapping[str, Any]) -> torch.Tensor:
        """The ``(num_envs, action_dim)`` actions for this step, on the observation's device."""
        actions = self.policy.get_action(observation)
        if not self._checked_action_width:
            self._check_action_width(env, actions)
        return actions

    def _check_action_width(self, env: Any, actions: torch.Tensor) -> None:
        shape = getattr(getattr(env, "action_space", None), "shape", None)
        if shape and len(shape) == 2 and int(shape[-1]) != actions.shape[-1]:
            raise ActionError(
                f"adapter {self.config.adapter!r} returns actions of width {actions.shape[-1]}, "
                f"the env expects {int(shape[-1])} (action_space {tuple(shape)})"
            )
        self._checked_action_width = True

    def reset(self, env_ids: torch.Tensor | None = None) -> None:
        """Start new episodes for ``env_ids`` (``None``: all envs)."""
        self.policy.reset(env_ids)

    def set_task_description(self, task_description: str | None) -> str | None:
        """Use the task description as the instruction (unless the config fixes one)."""
        if self.config.instruction is None:
            self.task_description = task_description
            self.policy.set_instruction(task_description or "")
        return self.task_description

    def close(self) -> None:
        """Release the adapter's sockets and threads. Idempotent."""
        self.policy.close()

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
