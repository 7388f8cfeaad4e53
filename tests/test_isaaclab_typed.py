"""The typed-config Isaac Lab Arena generation: ``arena_adapters.integrations.isaaclab_typed``.

The fake ``isaaclab_arena`` under ``isaaclab_arena_fakes/typed`` restates that generation's contract
(see its README): the ``PolicyCfg`` marker, ``PolicyBase[PolicyCfgT]``, the registry and its assertions,
flags generated from dataclass fields, legacy JSON jobs as ``Cfg(**dict)``, YAML experiments composed
against the config, and the runners' call sequence. Policies are driven against the GR00T and OpenPI
reference servers on loopback; only Isaac Sim is faked (``fake_env.FakeArenaEnv``).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
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
from arena_adapters.errors import AdapterError, ConfigError
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.integrations import isaaclab_config, isaaclab_launch, isaaclab_typed

FAKES = Path(__file__).parent / "isaaclab_arena_fakes"
GR00T = "arena_adapters.integrations.isaaclab_typed.Gr00tAdapterPolicy"
OPENPI = "arena_adapters.integrations.isaaclab_typed.OpenpiAdapterPolicy"


def _forget_fakes() -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in ("isaaclab_arena", "fake_env")]:
        del sys.modules[name]


@pytest.fixture
def arena(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The typed fake ``isaaclab_arena`` first on ``sys.path``; yields its ``policy_runner``."""
    _forget_fakes()
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.syspath_prepend(str(FAKES / "typed"))
    yield importlib.import_module("isaaclab_arena.evaluation.policy_runner")
    _forget_fakes()


@pytest.fixture(scope="module")
def gr00t_server() -> Iterator[ServerProcess]:
    with ServerProcess.for_expert("gr00t") as server:
        yield server


@pytest.fixture(scope="module")
def openpi_server() -> Iterator[ServerProcess]:
    with ServerProcess.for_expert("openpi") as server:
        yield server


def _registry() -> Any:
    return importlib.import_module("isaaclab_arena.assets.registries").PolicyRegistry()


def _env(args_or_run: Any, lengths: tuple[int, ...] = (3, 5, 4, 6)) -> Any:
    fake_env = importlib.import_module("fake_env")
    num_envs = args_or_run.num_envs
    instruction = args_or_run.language_instruction or "put the cube in the bowl"
    return fake_env.FakeArenaEnv(list(lengths[:num_envs]), task_description=instruction)


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


# ---------------------------------------------------------------- registration


def test_each_installed_adapter_has_a_registered_policy_with_its_own_cfg(arena: ModuleType) -> None:
    names = isaaclab_typed.register_all()
    assert {"arena_adapters_gr00t", "arena_adapters_openpi", "arena_adapters_openvla"} <= set(names)
    policy_base = importlib.import_module("isaaclab_arena.policy.policy_base")
    cfg_types = set()
    for name in names:
        policy_type = _registry().get_policy(name)
        cfg_type = _registry().get_policy_cfg_type(policy_type)
        assert dataclasses.is_dataclass(cfg_type) and issubclass(cfg_type, policy_base.PolicyCfg)
        assert issubclass(policy_type, policy_base.PolicyBase) and policy_type.name == name
        for gone in ("config_class", "from_dict", "add_args_to_parser", "from_args"):
            assert not hasattr(policy_type, gone), gone
        cfg_types.add(cfg_type)
        # the class and its config are importable where their names say (OSMO sends module.qualname)
        module = importlib.import_module(policy_type.__module__)
        assert getattr(module, policy_type.__qualname__) is policy_type
        assert getattr(module, cfg_type.__qualname__) is cfg_type
    assert len(cfg_types) == len(names)  # one PolicyCfg per policy
    # by registered name and by dotted path, the same class
    assert arena.get_policy_cls("arena_adapters_gr00t") is arena.get_policy_cls(GR00T)
    assert arena.get_policy_cls("zero_action").name == "zero_action"  # Arena's own still there


def test_a_dotted_path_registers_the_class_on_first_use(arena: ModuleType) -> None:
    assert not _registry().is_registered("arena_adapters_openpi")
    policy_type = arena.get_policy_cls(OPENPI)
    assert _registry().get_policy_cfg_type(policy_type).__name__ == "OpenpiAdapterPolicyCfg"
    assert _registry().is_registered("arena_adapters_openpi")
    with pytest.raises(AttributeError, match=r"no installed adapter is named so; .*Gr00tAdapterPolicy"):
        arena.get_policy_cls("arena_adapters.integrations.isaaclab_typed.NopeAdapterPolicy")


def test_the_fake_registry_refuses_what_arena_refuses(arena: ModuleType) -> None:
    """The fake is only worth its assertions: a policy shaped wrongly fails as in Arena."""
    register_policy = importlib.import_module("isaaclab_arena.assets.register").register_policy
    policy_base = importlib.import_module("isaaclab_arena.policy.policy_base")
    gr00t = arena.get_policy_cls(GR00T)

    class Inherited(gr00t):  # type: ignore[misc, valid-type]  # no direct PolicyBase[Cfg]
        name = "inherited"

    with pytest.raises(AssertionError, match="must directly inherit PolicyBase"):
        register_policy(Inherited)
    cfg_type = _registry().get_policy_cfg_type(gr00t)

    class SameCfg(isaaclab_typed.AdapterPolicyBase, policy_base.PolicyBase[cfg_type]):  # type: ignore[misc, valid-type]
        name = "same_cfg"

    with pytest.raises(AssertionError, match="already registered"):
        register_policy(SameCfg)
    with pytest.raises(AssertionError, match="Inherited must register a PolicyCfg"):
        _registry().get_policy_cfg_type(Inherited)
    with pytest.raises(AssertionError, match="dotted Python import path"):
        arena.get_policy_cls("not_registered")


def test_by_name_through_the_launcher(arena: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arena only imports its own policy package; the launcher registers ours when that happens."""
    _forget_fakes()  # a fresh Arena process: nothing imported yet
    script = tmp_path / "lookup.py"
    script.write_text(textwrap.dedent("""
        import sys
        from isaaclab_arena.evaluation.policy_runner import get_policy_cls
        sys.modules["lookup_result"] = get_policy_cls(sys.argv[1])
    """))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    isaaclab_launch.main([str(script), "arena_adapters_openpi"])
    found = sys.modules.pop("lookup_result")
    assert found.name == "arena_adapters_openpi" and found.__name__ == "OpenpiAdapterPolicy"
    assert not any(isinstance(finder, isaaclab_launch._RunAfterImport) for finder in sys.meta_path)


# ---------------------------------------------------------------- flags


def test_every_adapter_cfg_becomes_flags_arena_accepts(arena: ModuleType) -> None:
    for name in isaaclab_typed.register_all():
        parser = arena.shared_parser()
        arena.add_policy_cli_args(parser, _registry().get_policy(name))  # no clash, only supported types
        assert "--num_envs" in parser._option_string_actions and "--device" in parser._option_string_actions


def test_flags_become_a_typed_cfg(arena: ModuleType) -> None:
    policy_type = arena.get_policy_cls(OPENPI)
    parser = arena.shared_parser()
    arena.add_policy_cli_args(parser, policy_type)
    args = parser.parse_args(["--strategy", "lockstep", "--execute_steps", "4", "--num_envs", "3",
                              "--arena_preset", "pi0", "--adapter_options", "api_key=k", "--timeout", "2.5"])
    cfg_type = _registry().get_policy_cfg_type(policy_type)
    cfg = importlib.import_module("isaaclab_arena.cli.dataclass_cli").dataclass_from_cli(cfg_type, args)
    assert cfg.strategy is cfg_type.Strategy("lockstep") and cfg.execute_steps == 4 and cfg.timeout == 2.5
    assert cfg.num_envs == 3 and cfg.adapter_options == ["api_key=k"]
    options = isaaclab_config.load_policy_options(cfg, "openpi")
    assert {key: options[key] for key in ("execute_steps", "strategy", "timeout", "num_envs", "api_key")} == {
        "execute_steps": 4, "strategy": "lockstep", "timeout": 2.5, "num_envs": 3, "api_key": "k"}
    assert options["endpoint"] == "ws://127.0.0.1:8000" and options["embodiment"] == "droid"  # the adapter's defaults
    assert None not in options.values() and "arena_preset" not in options and "adapter_options" not in options
    assert not any(isinstance(value, enum.Enum) for value in options.values())  # plain values for load_policy
    with pytest.raises(SystemExit):
        parser.parse_args(["--strategy", "sideways"])


def test_presets_reproduce_arenas_own_policies(arena: ModuleType) -> None:
    gr00t_cfg = _registry().get_policy_cfg_type(arena.get_policy_cls(GR00T))
    openpi_cfg = _registry().get_policy_cfg_type(arena.get_policy_cls(OPENPI))
    assert isaaclab_config.load_policy_options(gr00t_cfg(arena_preset="droid"), "gr00t")["execute_steps"] == 32
    assert isaaclab_config.load_policy_options(openpi_cfg(arena_preset="pi05"), "openpi")["execute_steps"] == 15
    assert isaaclab_config.load_policy_options(openpi_cfg(arena_preset="pi0"), "openpi")["execute_steps"] == 10
    explicit = openpi_cfg(arena_preset="pi05", execute_steps=5)
    assert isaaclab_config.load_policy_options(explicit, "openpi")["execute_steps"] == 5  # explicit wins
    assert "execute_steps" not in isaaclab_config.load_policy_options(openpi_cfg(), "openpi")  # default: all
    with pytest.raises(ConfigError, match=r"arena_preset: expected one of \['pi0', 'pi05'\].*got 'droid'"):
        isaaclab_config.load_policy_options(openpi_cfg(arena_preset="droid"), "openpi")


# ---------------------------------------------------------------- policy_runner


def test_policy_runner_drives_gr00t_by_flags(arena: ModuleType, gr00t_server: ServerProcess) -> None:
    baseline = _open_sockets()
    argv = ["--policy_type", GR00T, "--endpoint", gr00t_server.endpoint, "--format", "flat",
            "--execute_steps", "8", "--num_envs", "4", "--num_episodes", "6",
            "--language_instruction", "stack the cups", "fake_droid", "--embodiment", "droid_abs_joint_pos"]
    policy, env, episodes = arena.main(argv, _env)
    assert episodes >= 6 and env.closed
    assert all(env.inference_mode_steps)
    assert {tuple(action.shape) for action in env.actions} == {(4, 8)}
    assert all(action.dtype == torch.float32 and torch.isfinite(action).all() for action in env.actions)
    assert 0 < policy.policy.stats.queries < len(env.actions)  # chunks replayed between queries
    assert policy.task_description == "stack the cups" and policy.policy.instruction == "stack the cups"
    assert policy.config.num_envs == 4 and not policy.is_remote
    assert _open_sockets() > baseline  # policy_runner never calls close() ...
    assert policy._release.alive and policy._release.atexit  # ... so it is also due at interpreter exit
    policy.close()
    assert not policy._release.alive
    policy.close()  # idempotent
    assert _open_sockets() == baseline  # ... close() releases everything


def test_a_dead_server_fails_in_the_constructor_with_a_typed_error(arena: ModuleType) -> None:
    baseline = _open_sockets()
    argv = ["--policy_type", OPENPI, "--endpoint", "ws://127.0.0.1:9", "--connect_timeout", "0.5",
            "--retry_attempts", "0", "fake_droid"]
    with pytest.raises(AdapterError, match="127.0.0.1:9"):
        arena.main(argv, _env)
    assert _open_sockets() == baseline


def test_an_environment_name_swallowed_by_adapter_options_is_named(arena: ModuleType) -> None:
    argv = ["--policy_type", OPENPI, "--adapter_options", "api_key=k", "fake_droid"]
    with pytest.raises(SystemExit):  # argparse: the subcommand was taken as an item
        arena.main(argv, _env)
    cfg_type = _registry().get_policy_cfg_type(arena.get_policy_cls(OPENPI))
    with pytest.raises(ConfigError, match=r"adapter_options: expected NAME=VALUE items, got 'fake_droid'"):
        arena.get_policy_cls(OPENPI)(cfg_type(adapter_options=["api_key=k", "fake_droid"]))


# ---------------------------------------------------------------- experiment_runner


def test_legacy_json_jobs_build_cfg_from_a_dict(arena: ModuleType, openpi_server: ServerProcess,
                                                gr00t_server: ServerProcess) -> None:
    runner = importlib.import_module("isaaclab_arena.evaluation.experiment_runner")
    isaaclab_launch.install_registration_hook()  # Arena's policy package is loaded: registers at once
    baseline = _open_sockets()
    jobs = {"jobs": [
        {"name": "openpi_job", "arena_env_args": {"environment": "fake_droid", "num_envs": 2},
         "policy_type": OPENPI, "num_episodes": 3, "language_instruction": "open the drawer",
         "policy_config_dict": {"endpoint": openpi_server.endpoint, "arena_preset": "pi05", "strategy": "replay",
                                **served_expert("openpi").client_options}},
        {"name": "gr00t_job", "arena_env_args": {"environment": "fake_droid", "num_envs": 3},
         "policy_type": "arena_adapters_gr00t", "num_steps": 12,
         "policy_args": {"endpoint": gr00t_server.endpoint, "format": "flat", "execute_steps": 8}},
    ]}
    runs = runner.runs_from_legacy_json(jobs)
    assert runs[0].policy.execute_steps == 8 and runs[0].policy.arena_preset == "pi05"
    episodes = runner.execute(runs, _env)
    assert episodes[0] >= 3 and episodes[1] >= 1
    assert _open_sockets() == baseline  # the runner closed every policy
    bad = {"jobs": [{**jobs["jobs"][0], "policy_config_dict": {"endpoint": "ws://x", "bogus": 1}}]}
    with pytest.raises(TypeError, match="bogus"):
        runner.runs_from_legacy_json(bad)


EXPERIMENT = """
shared:
  gr00t_endpoint: {gr00t}
runs:
  droid_gr00t:
    environment: {{type: fake_droid, enable_cameras: true}}
    environment_builder: {{num_envs: 3, language_instruction: pick up the cube}}
    policy:
      type: {gr00t_type}
      endpoint: ${{shared.gr00t_endpoint}}
      format: flat
      arena_preset: droid
      timeout: 10
    rollout_limit: {{num_episodes: 4}}
    num_rebuilds: 2
  droid_openpi:
    environment: {{type: fake_droid}}
    environment_builder: {{num_envs: 2}}
    policy:
      type: arena_adapters_openpi
      endpoint: {openpi}
      arena_preset: pi05
      strategy: replay
      adapter_options: [max_concurrency=2]
    rollout_limit: {{num_steps: 20}}
"""


def test_a_yaml_experiment_runs_both_adapters_and_closes_every_rebuild(
    arena: ModuleType, gr00t_server: ServerProcess, openpi_server: ServerProcess, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = importlib.import_module("isaaclab_arena.evaluation.experiment_runner")
    isaaclab_typed.register_all()  # for the registered name (the launcher does this in Arena)
    path = tmp_path / "experiment.yaml"
    path.write_text(EXPERIMENT.format(gr00t=gr00t_server.endpoint, openpi=openpi_server.endpoint, gr00t_type=GR00T))
    runs = runner.load_experiment(path, overrides=["runs.droid_openpi.policy.execute_steps=5"])
    gr00t_cfg, openpi_cfg = runs[0].policy, runs[1].policy
    assert isinstance(gr00t_cfg.arena_preset, enum.Enum) and gr00t_cfg.arena_preset.value == "droid"
    assert gr00t_cfg.timeout == 10.0 and isinstance(gr00t_cfg.timeout, float)
    assert openpi_cfg.execute_steps == 5 and openpi_cfg.adapter_options == ["max_concurrency=2"]
    closes: list[str] = []
    original_close = isaaclab_typed.AdapterPolicyBase.close

    def counting_close(self: Any) -> None:
        closes.append(self.name)
        original_close(self)

    monkeypatch.setattr(isaaclab_typed.AdapterPolicyBase, "close", counting_close)
    baseline = _open_sockets()
    episodes = runner.execute(runs, _env)
    assert episodes[0] >= 4 and episodes[1] >= 20 // 6 and len(episodes) == 3
    assert closes == ["arena_adapters_gr00t", "arena_adapters_gr00t", "arena_adapters_openpi"]
    assert _open_sockets() == baseline


@pytest.mark.parametrize(("policy_yaml", "message"), [
    ("endpoint: ws://x\n      bogus: 1", r"Key 'bogus' not in OpenpiAdapterPolicyCfg"),
    ("execute_steps: many", r"runs.r.policy.execute_steps: expected int, got 'many'"),
    ("strategy: sideways", r"runs.r.policy.strategy: invalid value 'sideways', valid names: \['replay', "),
    ("adapter_options: api_key=k", r"runs.r.policy.adapter_options: expected a list"),
    ("timeout: null", r"runs.r.policy.timeout: field is not Optional"),
])
def test_yaml_values_are_checked_against_the_cfg(arena: ModuleType, tmp_path: Path, policy_yaml: str,
                                                  message: str) -> None:
    runner = importlib.import_module("isaaclab_arena.evaluation.experiment_runner")
    path = tmp_path / "bad.yaml"
    path.write_text(f"runs:\n  r:\n    policy:\n      type: {OPENPI}\n      {policy_yaml}\n"
                    "    rollout_limit: {num_steps: 1}\n")
    with pytest.raises(ValueError, match=r"Could not compose Arena Experiment .*" + message):
        runner.load_experiment(path)


def test_the_older_generation_is_pointed_to_the_legacy_class(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget_fakes()
    monkeypatch.syspath_prepend(str(FAKES / "argparse"))
    try:
        with pytest.raises(ImportError, match=r"older \(argparse\) generation.*arena_adapters.isaaclab.AdapterPolicy"):
            isaaclab_typed.policy_class("gr00t")
    finally:
        _forget_fakes()


# ---------------------------------------------------------------- the real composer


def _compose_with_omegaconf(cfg_type: type, values: dict[str, Any]) -> Any:
    """What Arena's YAML loader does with a run's policy section: a structured config of the resolved
    ``PolicyCfg`` with the YAML values over it, turned into the dataclass (OmegaConf is Arena's composer)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cfg_type), values))


def test_every_adapter_cfg_composes_with_omegaconf(arena: ModuleType) -> None:
    for name in isaaclab_typed.register_all():
        cfg_type = _registry().get_policy_cfg_type(_registry().get_policy(name))
        required = {field.name: "x" for field in dataclasses.fields(cfg_type)
                    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING}
        cfg = _compose_with_omegaconf(cfg_type, {**required, "num_envs": 4, "execute_steps": 3,
                                                 "strategy": "lockstep", "adapter_options": ["a=1"]})
        assert type(cfg) is cfg_type and cfg.num_envs == 4 and cfg.execute_steps == 3
        assert cfg.strategy is cfg_type.Strategy("lockstep") and cfg.adapter_options == ["a=1"]


def test_omegaconf_and_the_fake_composer_agree(arena: ModuleType) -> None:
    from omegaconf.errors import OmegaConfBaseException

    runner = importlib.import_module("isaaclab_arena.evaluation.experiment_runner")
    cfg_type = _registry().get_policy_cfg_type(arena.get_policy_cls(GR00T))
    good = {"protocol_version": "n1.6", "format": "flat", "arena_preset": "droid", "timeout": 3,
            "gripper_threshold": None, "image_size": "180x320", "adapter_options": ["api_token=t"]}
    assert _compose_with_omegaconf(cfg_type, good) == runner.compose_policy_cfg(cfg_type, good, "p")
    for bad in ({"bogus": 1}, {"timeout": "soon"}, {"format": "sideways"}, {"timeout": None},
                {"adapter_options": "api_token=t"}):
        with pytest.raises(OmegaConfBaseException):
            _compose_with_omegaconf(cfg_type, bad)
        with pytest.raises(ValueError):
            runner.compose_policy_cfg(cfg_type, bad, "p")


def test_close_never_raises_and_runs_once(arena: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    local = arena.get_policy_cls("arena_adapters.integrations.isaaclab_typed.LocalAdapterPolicy")
    cfg_type = _registry().get_policy_cfg_type(local)
    policy = local(cfg_type(policy="arena_adapters.envs.reach_serving:random_policy"))
    calls: list[int] = []

    def failing_close() -> None:
        calls.append(1)
        raise OSError("socket already gone")

    monkeypatch.setattr(policy.policy.transport, "close", failing_close)
    with pytest.warns(UserWarning, match=r"closing adapter 'local' failed: socket already gone"):
        policy.close()
    policy.close()  # released once: no second attempt, no warning
    assert calls == [1]


def _readme_block(language: str) -> str:
    section = (Path(__file__).parents[1] / "README.md").read_text().split("## Isaac Lab Arena", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readme_yaml_experiment_composes_and_connects(
    arena: ModuleType, gr00t_server: ServerProcess, openpi_server: ServerProcess, tmp_path: Path
) -> None:
    from omegaconf import OmegaConf

    runner = importlib.import_module("isaaclab_arena.evaluation.experiment_runner")
    text = _readme_block("yaml").replace("ws://GPU-HOST:8000", openpi_server.endpoint)
    path = tmp_path / "droid_adapters.yaml"
    path.write_text(text.replace("tcp://GPU-HOST:5555", gr00t_server.endpoint))
    runs = runner.load_experiment(path)
    assert [run.name for run in runs] == ["droid_openpi", "droid_gr00t"]
    for run, section in zip(runs, OmegaConf.load(path).runs.values(), strict=True):
        values = OmegaConf.to_container(section.policy)
        values.pop("type")
        assert _compose_with_omegaconf(type(run.policy), values) == run.policy
        policy = _registry().get_policy_type_for_cfg(run.policy)(dataclasses.replace(run.policy, num_envs=run.num_envs))
        policy.close()
