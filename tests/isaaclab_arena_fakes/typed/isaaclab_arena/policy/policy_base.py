"""Typed generation: ``PolicyCfg`` marker, ``PolicyBase(ABC, Generic[PolicyCfgT])`` with ``__init__(config)``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch


@dataclass
class PolicyCfg:
    """Marker base of every policy config dataclass."""


PolicyCfgT = TypeVar("PolicyCfgT", bound=PolicyCfg)


class PolicyBase(ABC, Generic[PolicyCfgT]):
    """Only ``get_action`` is abstract; no config_class/from_dict/add_args_to_parser/from_args."""

    def __init__(self, config: PolicyCfgT) -> None:
        self.config = config

    @abstractmethod
    def get_action(self, env: Any, observation: Any) -> torch.Tensor: ...

    def reset(self, env_ids: torch.Tensor | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def set_task_description(self, task_description: str | None) -> str | None:
        self.task_description = task_description
        return self.task_description

    def has_length(self) -> bool:
        return False

    def length(self) -> int | None:
        return None

    @property
    def is_remote(self) -> bool:
        return False
