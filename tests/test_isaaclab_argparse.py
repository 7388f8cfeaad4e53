"""The older ("argparse") Isaac Lab Arena generation: ``arena_adapters.isaaclab.AdapterPolicy`` unchanged.

The fake ``isaaclab_arena`` under ``isaaclab_arena_fakes/argparse`` restates that generation's contract
(see its README): ``PolicyBase`` with ``config_class``/``from_dict`` and the abstract
``add_args_to_parser``/``from_args``, the name registry, ``policy_runner`` (flags from the policy,
``shutdown_remote`` for remote policies, no ``close``) and ``eval_runner`` (JSON jobs, ``num_envs``
injected, ``close`` in a ``finally``). Driven against the GR00T and OpenPI reference servers on loopback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from arena_adapters.envs.expert_server import served_expert
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.integrations import isaaclab_launch

FAKES = Path(__file__).parent / "isaaclab_arena_fakes"
LEGACY_MODULES = ("arena_adapters.isaaclab", "arena_adapters.integrations.isaaclab_legacy")


def _forget_fakes() -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in ("isaaclab_arena", "fake_env")]:
        del sys.modules[name]


@pytest.fixture
def arena(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The older fake ``isaaclab_arena`` first on ``sys.path``, and ``arena_adapters.isaaclab`` imported
    afresh under it (as in an Arena process); yields its ``policy_runner``."""
    _forget_fakes()
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.syspath_prepend(str(FAKES / "argparse"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    for name in LEGACY_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module("isaaclab_arena.evaluation.policy_runner")
    _forget_fakes()
    for name in LEGACY_MODULES:  # the next importer gets the module built without Arena again
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    with ServerProcess.for_expert("gr00t") as gr00t, ServerProcess.for_expert("openpi") as openpi:
        yield {"gr00t": gr00t, "openpi": openpi}


def _env(args_or_job: Any) -> Any:
    fake_env = importlib.import_module("fake_env")
    num_envs = args_or_job.num_envs if hasattr(args_or_job, "num_envs") else args_or_job["arena_env_args"]["num_envs"]
    return fake_env.FakeArenaEnv([3, 5, 4, 6][:num_envs])


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


@pytest.mark.parametrize("adapter", ["gr00t", "openpi"])
def test_policy_runner_drives_the_adapter_by_flags(arena: ModuleType, servers: dict[str, ServerProcess],
                                                   adapter: str) -> None:
    baseline = _open_sockets()
    options = [f"--{key}={value}" for key, value in served_expert(adapter).client_options.items()]
    argv = ["--policy_type", "arena_adapters.isaaclab.AdapterPolicy", "--num_envs", "3", "--num_episodes", "5",
            "--adapter", adapter, "--endpoint", servers[adapter].endpoint, *options, "--execute_steps", "4",
            "--language_instruction", "stack the cups", "fake_droid", "--embodiment", "droid_abs_joint_pos"]
    sys.argv = ["policy_runner.py", *argv]  # the policy peeks at sys.argv for --adapter, as in Arena
    policy, env, episodes = arena.main(argv, _env)
    policy_base = importlib.import_module("isaaclab_arena.policy.policy_base").PolicyBase
    assert isinstance(policy, policy_base)
    assert episodes >= 5 and env.closed and all(env.inference_mode_steps)
    assert {tuple(action.shape) for action in env.actions} == {(3, 8)}
    assert all(action.dtype == torch.float32 for action in env.actions)
    assert 0 < policy.policy.stats.queries < len(env.actions)
    assert policy.policy.instruction == "stack the cups"
    assert _open_sockets() == baseline  # is_remote -> shutdown_remote closed it (policy_runner never calls close)


def test_eval_runner_jobs_inject_num_envs_and_close(arena: ModuleType, servers: dict[str, ServerProcess]) -> None:
    eval_runner = importlib.import_module("isaaclab_arena.evaluation.eval_runner")
    baseline = _open_sockets()
    jobs = {"jobs": [
        {"name": name, "arena_env_args": {"environment": "fake_droid", "num_envs": 2},
         "policy_type": "arena_adapters.isaaclab.AdapterPolicy", "num_episodes": 3,
         "policy_config_dict": {"adapter": name, "endpoint": servers[name].endpoint,
                                "options": {**served_expert(name).client_options, "execute_steps": 4}}}
        for name in ("gr00t", "openpi")
    ]}
    episodes = eval_runner.run_jobs(jobs, _env)
    assert all(count >= 3 for count in episodes)
    assert _open_sockets() == baseline
    policy = eval_runner.get_policy_from_job(jobs["jobs"][0])
    assert policy.config.num_envs == 2  # injected because AdapterPolicyConfig has num_envs
    policy.close()


def test_registered_as_arena_adapters_through_the_launcher(arena: ModuleType, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _forget_fakes()
    for name in LEGACY_MODULES:
        sys.modules.pop(name, None)
    script = tmp_path / "lookup.py"
    script.write_text(textwrap.dedent("""
        import sys
        from isaaclab_arena.evaluation.policy_runner import get_policy_cls
        sys.modules["lookup_result"] = get_policy_cls("arena_adapters")
    """))
    monkeypatch.setattr(sys, "path", list(sys.path))
    isaaclab_launch.main([str(script)])
    found = sys.modules.pop("lookup_result")
    assert found is importlib.import_module("arena_adapters.isaaclab").AdapterPolicy
    assert found.name == "arena_adapters"


def test_the_readme_eval_job_builds_the_policy(arena: ModuleType, servers: dict[str, ServerProcess]) -> None:
    eval_runner = importlib.import_module("isaaclab_arena.evaluation.eval_runner")
    readme = (Path(__file__).parents[1] / "README.md").read_text().split("## Isaac Lab Arena", 1)[1]
    text = readme.split("```json\n", 1)[1].split("```", 1)[0]
    (job,) = json.loads(text.replace("ws://GPU-HOST:8000", servers["openpi"].endpoint))["jobs"]
    policy = eval_runner.get_policy_from_job(job)
    assert policy.config.adapter == "openpi" and policy.config.num_envs == 2
    assert policy.config.options == {"execute_steps": 15}
    episodes = eval_runner.run_jobs({"jobs": [job]}, _env)
    assert episodes[0] >= job["num_episodes"]
    policy.close()
