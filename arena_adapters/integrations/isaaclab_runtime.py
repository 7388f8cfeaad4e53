"""What an Isaac Lab Arena policy does at run time, for both Arena API generations.

:class:`ArenaPolicyRuntime` holds one loaded :class:`~arena_adapters.Policy` and implements Arena's
per-step hooks around it: ``get_action(env, observation)``, ``reset(env_ids)``,
``set_task_description``, ``has_length``/``length`` and ``close``. The policy classes of
:mod:`~arena_adapters.integrations.isaaclab_legacy` and :mod:`~arena_adapters.integrations.isaaclab_typed`
put it before Arena's ``PolicyBase`` in their bases, so these methods are the ones Arena calls.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from arena_adapters.errors import ActionError
from arena_adapters.layouts import ActionLayout, check_layouts
from arena_adapters.plugins import PluginRegistry
from arena_adapters.policy import Policy, load_policy


class ArenaPolicyRuntime:
    """Arena's policy hooks around a loaded adapter (a mixin: call :meth:`_load_adapter` in ``__init__``).

    Attributes:
        policy: the loaded adapter.
        task_description: the instruction in use (a fixed one, or the last ``set_task_description``).
    """

    policy: Policy
    task_description: str | None
    _adapter_name: str
    _fixed_instruction: bool
    _checked_action_width: bool
    _release: weakref.finalize[[], ArenaPolicyRuntime]

    def _load_adapter(
        self, adapter: str, options: Mapping[str, Any], registry: PluginRegistry | None = None
    ) -> None:
        """Load ``adapter`` with ``options`` (``load_policy`` keywords) and arrange its release.

        The adapter is closed by :meth:`close`, and at interpreter exit if nobody calls it (Arena's
        ``policy_runner`` never does).
        """
        self._adapter_name = adapter
        instruction = options.get("instruction")
        self._fixed_instruction = instruction is not None
        self.task_description = instruction
        self._checked_action_width = False
        self.policy = load_policy(adapter, registry=registry, **options)
        self._release = weakref.finalize(self, self.policy.close)

    def get_action(self, env: Any, observation: Mapping[str, Any]) -> torch.Tensor:
        """The ``(num_envs, action_dim)`` actions for this step, on the observation's device.

        Raises:
            ConfigError: before the first query, when the adapter's declared action layout does
                not fit the env's ``action_space`` (the message names the dims and the fix).
            ActionError: on the first step, when the adapter's action width differs from the env's
                ``action_space``.
        """
        if not self._checked_action_width:
            shape = getattr(getattr(env, "action_space", None), "shape", None)
            if shape and len(shape) == 2:
                check_layouts(self.policy.action_layout, ActionLayout.of_width(int(shape[-1])),
                              adapter=self._adapter_name, environment=type(env).__name__)
        actions = self.policy.get_action(observation)
        if not self._checked_action_width:
            self._check_action_width(env, actions)
        return actions

    def _check_action_width(self, env: Any, actions: torch.Tensor) -> None:
        shape = getattr(getattr(env, "action_space", None), "shape", None)
        if shape and len(shape) == 2 and int(shape[-1]) != actions.shape[-1]:
            raise ActionError(
                f"adapter {self._adapter_name!r} returns actions of width {actions.shape[-1]}, "
                f"the env expects {int(shape[-1])} (action_space {tuple(shape)}); set the adapter's "
                "action options (e.g. action_dim) to match the embodiment"
            )
        self._checked_action_width = True

    def reset(self, env_ids: torch.Tensor | None = None) -> None:
        """Start new episodes for ``env_ids`` (``None``: all envs): their chunks are dropped."""
        self.policy.reset(env_ids)

    def set_task_description(self, task_description: str | None) -> str | None:
        """Use the task description as the instruction, unless the config fixes one; return the one in use."""
        if not self._fixed_instruction:
            self.task_description = task_description
            self.policy.set_instruction(task_description or "")
        return self.task_description

    def has_length(self) -> bool:
        """False: a live policy, not a recording (the runner's step/episode limit applies)."""
        return False

    def length(self) -> int | None:
        """None: a live policy has no length."""
        return None

    def close(self) -> None:
        """Release the adapter's sockets and threads. Idempotent, and never raises: a failure while
        releasing is a warning, so that the runner's teardown of the environment goes on."""
        release = getattr(self, "_release", None)
        if release is None:
            return
        try:
            release()
        except Exception as error:
            warnings.warn(f"arena-adapters: closing adapter {self._adapter_name!r} failed: {error}", stacklevel=2)
