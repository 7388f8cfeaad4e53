"""Typed ``experiment_runner``: legacy JSON jobs and YAML experiments, a new policy per run and rebuild.

Legacy JSON (``{"jobs": [...]}`` only): ``policy_config_dict`` (or the alias ``policy_args``, never both)
becomes ``Cfg(**values)``. YAML: top level ``runs`` (+ optional ``shared``, ``${shared.x}``); a run's
``policy`` is ``type`` (registered name or dotted path) plus the config fields as sibling keys, composed
as a structured config: unknown keys and wrong types fail, Enums are given by member name, ``None``
only for Optional fields, lists item by item, ``runs.<name>.policy.<field>=value`` overrides last.
Execution: ``num_envs`` replaced from ``environment_builder.num_envs``, ``get_policy_type_for_cfg(cfg)(cfg)``,
rollout, then ``policy.close()`` before the env is torn down, always.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from isaaclab_arena.assets.registries import PolicyRegistry
from isaaclab_arena.evaluation.policy_runner import get_policy_cls, rollout_policy
from isaaclab_arena.policy.policy_base import PolicyCfg

_SHARED = re.compile(r"^\$\{shared\.([A-Za-z0-9_.]+)\}$")


@dataclasses.dataclass
class Run:
    name: str
    policy: Any
    num_envs: int = 1
    language_instruction: str | None = None
    num_steps: int | None = None
    num_episodes: int | None = None
    num_rebuilds: int = 1


def runs_from_legacy_json(config: dict[str, Any]) -> list[Run]:
    assert set(config) == {"jobs"}, f"legacy eval config must be exactly {{'jobs': [...]}}, got keys {sorted(config)}"
    runs = []
    for job in config["jobs"]:
        assert not ("policy_config_dict" in job and "policy_args" in job), "give policy_config_dict or policy_args"
        values = job.get("policy_config_dict", job.get("policy_args", {}))
        cfg_type = PolicyRegistry().get_policy_cfg_type(get_policy_cls(job["policy_type"]))
        runs.append(Run(job["name"], cfg_type(**values), num_envs=job["arena_env_args"].get("num_envs", 1),
                        language_instruction=job.get("language_instruction"),
                        num_steps=job.get("num_steps"), num_episodes=job.get("num_episodes")))
    return runs


def _policy_cfg_type(selector: str) -> type:
    if PolicyRegistry().is_registered(selector):
        return PolicyRegistry().get_policy_cfg_type(PolicyRegistry().get_policy(selector))
    assert "." in selector, f"Policy type must be a registered name or dotted Python class path, got {selector!r}"
    return PolicyRegistry().get_policy_cfg_type(get_policy_cls(selector))


def _check(annotation: Any, value: Any, where: str) -> Any:
    members = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in members:
            return None
        (annotation,) = [member for member in members if member is not type(None)]
    if value is None:
        raise ValueError(f"{where}: field is not Optional, got None")
    if typing.get_origin(annotation) is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_check(typing.get_args(annotation)[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, str) or value not in annotation.__members__:
            raise ValueError(f"{where}: invalid value {value!r}, valid names: {list(annotation.__members__)}")
        return annotation[value]  # by member NAME, as OmegaConf does
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected bool, got {value!r}")
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def compose_policy_cfg(cfg_type: type, values: dict[str, Any], where: str) -> Any:
    assert issubclass(cfg_type, PolicyCfg)
    hints = typing.get_type_hints(cfg_type)
    fields = {field.name: field for field in dataclasses.fields(cfg_type)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: Key {unknown[0]!r} not in {cfg_type.__name__}")
    composed = {name: _check(hints[name], value, f"{where}.{name}") for name, value in values.items()}
    missing = [name for name, field in fields.items() if name not in composed
               and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: Missing mandatory value: {missing[0]}")
    return cfg_type(**composed)


def _resolve(value: Any, shared: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(item, shared) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, shared) for item in value]
    match = _SHARED.match(value) if isinstance(value, str) else None
    if match:
        node: Any = shared
        for key in match.group(1).split("."):
            node = node[key]
        return node
    return value


def load_experiment(path: Path, overrides: Sequence[str] = ()) -> list[Run]:
    try:
        document = yaml.safe_load(path.read_text())
        assert isinstance(document, dict), "Experiment config must be a mapping"
        unknown = sorted(set(document) - {"runs", "shared"})
        assert not unknown, f"Unknown Experiment fields: {', '.join(unknown)}"
        assert isinstance(document.get("runs"), dict) and document["runs"], "Experiment must define at least one Run"
        shared = document.get("shared", {})
        runs = []
        for run_name, raw in document["runs"].items():
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", run_name), f"bad Run name {run_name!r}"
            assert "name" not in raw and "shared" not in raw, f"Run {run_name!r} must not define name/shared"
            raw = _resolve(raw, shared)
            policy_values = dict(raw["policy"])
            for override in overrides:
                key, _, text = override.partition("=")
                prefix = f"runs.{run_name}.policy."
                if key.startswith(prefix):
                    policy_values[key[len(prefix):]] = yaml.safe_load(text)
            selector = policy_values.pop("type")
            cfg = compose_policy_cfg(_policy_cfg_type(selector), policy_values, f"runs.{run_name}.policy")
            builder = raw.get("environment_builder", {})
            limit = raw.get("rollout_limit", {})
            assert ("num_steps" in limit) != ("num_episodes" in limit), "rollout_limit: num_steps xor num_episodes"
            runs.append(Run(run_name, cfg, num_envs=builder.get("num_envs", 1),
                            language_instruction=builder.get("language_instruction"),
                            num_steps=limit.get("num_steps"), num_episodes=limit.get("num_episodes"),
                            num_rebuilds=raw.get("num_rebuilds", 1)))
        return runs
    except (AssertionError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"Could not compose Arena Experiment '{path}': {error}") from error


def execute(runs: list[Run], make_env: Callable[[Run], Any]) -> list[int]:
    episodes = []
    for run in runs:
        for _ in range(run.num_rebuilds):
            cfg = run.policy
            if "num_envs" in {field.name for field in dataclasses.fields(cfg)}:
                cfg = dataclasses.replace(cfg, num_envs=run.num_envs)
            policy = PolicyRegistry().get_policy_type_for_cfg(cfg)(cfg)
            env = None
            try:
                env = make_env(run)
                episodes.append(rollout_policy(env, policy, run.num_steps, run.num_episodes))
            finally:
                policy.close()
                if env is not None:
                    env.close()
    return episodes
