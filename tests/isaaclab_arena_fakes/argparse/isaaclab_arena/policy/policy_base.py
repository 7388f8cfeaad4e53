"""Older generation: ``config_class``, ``from_dict``; abstract ``get_action``, ``add_args_to_parser``, ``from_args``."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from typing import Any

import torch


class PolicyBase(ABC):
    config_class: type | None = None

    def __init__(self, config: Any) -> None:
        self.config = config

    @abstractmethod
    def get_action(self, env: Any, observation: Any) -> torch.Tensor: ...

    @staticmethod
    @abstractmethod
    def add_args_to_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser: ...

    @staticmethod
    @abstractmethod
    def from_args(args: argparse.Namespace) -> PolicyBase: ...

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> PolicyBase:
        if cls.config_class is None:
            raise NotImplementedError(f"{cls.__name__} has no config_class")
        return cls(cls.config_class(**config_dict))

    def reset(self, env_ids: torch.Tensor | None = None) -> None:  # noqa: B027
        pass

    def close(self) -> None:  # noqa: B027
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
