"""Plugin discovery and loading with real installed distributions (entry points on sys.path)."""

from __future__ import annotations

import importlib
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from arena_adapters import load_policy
from arena_adapters.errors import ConfigError, PluginError, UnknownAdapterError
from arena_adapters.plugins import BLOCK_PLUGINS_ENV, DISABLE_AUTOLOAD_ENV, PluginRegistry
from arena_adapters.records import ObservationTranslatorRecord, TransportRecord

TOY_PLUGIN = """
import numpy as np
import torch
from arena_adapters import hookimpl, Option
from arena_adapters.parts import Health
from arena_adapters.records import (ActionTranslatorRecord, AdapterRecord,
    ObservationTranslatorRecord, TransportRecord)

class EchoTransport:
    def __init__(self, offset):
        self.offset = offset
        self.resets = []
    def connect(self): pass
    def health(self): return Health(ok=True)
    def metadata(self): return {}
    def infer(self, request): return {"actions": request["state"] + self.offset}
    def reset(self, env_ids): self.resets.append(env_ids)
    def close(self): pass

class StateObservations:
    def translate(self, observation, query):
        return {"state": observation["policy"]["state"][query.env_ids].cpu().numpy()}

class ChunkActions:
    def __init__(self, horizon):
        self.horizon = horizon
    def translate(self, reply, query):
        actions = torch.as_tensor(reply["actions"], dtype=torch.float32, device=query.device)
        return actions.unsqueeze(1).repeat(1, self.horizon, 1)

@hookimpl
def register_transports(register):
    register(TransportRecord(name="toy.echo", protocol="toy", factory=EchoTransport,
                             options=(Option("offset", float, 0.0, "added to the state"),)))

@hookimpl
def register_observation_translators(register):
    register(ObservationTranslatorRecord(name="toy.state", protocol="toy", factory=StateObservations))

@hookimpl
def register_action_translators(register):
    register(ActionTranslatorRecord(name="toy.chunk", protocol="toy", factory=ChunkActions,
                                    options=(Option("horizon", int, 4),)))

@hookimpl
def register_adapters(register):
    register(AdapterRecord(name="toy", protocol="toy", transport="toy.echo",
                           observation_translator="toy.state", action_translator="toy.chunk",
                           defaults={"execute_steps": 2}))
"""

ROBOT_PLUGIN = """
import torch
from arena_adapters import hookimpl
from arena_adapters.records import AdapterRecord, ObservationTranslatorRecord

class DoubledState:
    def translate(self, observation, query):
        return {"state": 2 * observation["policy"]["state"][query.env_ids].cpu().numpy()}

@hookimpl
def register_observation_translators(register):
    register(ObservationTranslatorRecord(name="robotx.doubled", protocol="toy", factory=DoubledState))

@hookimpl
def register_adapters(register):
    register(AdapterRecord(name="robotx", protocol="toy", transport="toy.echo",
                           observation_translator="robotx.doubled", action_translator="toy.chunk"))
"""

BROKEN_PLUGIN = "import this_module_does_not_exist_anywhere\n"

BAD_RECORD_PLUGIN = """
from arena_adapters import hookimpl
from arena_adapters.records import TransportRecord

@hookimpl
def register_transports(register):
    register(TransportRecord(name="bad.transport", protocol="bad", factory="not callable"))
"""


def _observation(num_envs: int) -> dict[str, dict[str, torch.Tensor]]:
    return {"policy": {"state": torch.arange(num_envs * 2, dtype=torch.float32).view(num_envs, 2)}}


def test_listing_reads_metadata_without_importing(install_plugin) -> None:
    module = install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    registry = PluginRegistry()
    assert "toy" in registry.available_adapters()
    assert "local" in registry.available_adapters()
    info = registry.plugins()["toy"]
    assert (info.distribution, info.version, info.module) == ("toy-adapters", "1.2.3", module)
    assert module not in sys.modules
    assert registry.status("toy") == "not loaded"


def test_loading_imports_only_the_selected_plugin(install_plugin) -> None:
    toy = install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    robot = install_plugin("robotx-adapters", ROBOT_PLUGIN, {"robotx": "{module}"})
    registry = PluginRegistry()
    policy = load_policy("toy", registry=registry, offset=10.0)
    assert toy in sys.modules and robot not in sys.modules
    actions = policy.get_action(_observation(3))
    assert actions.tolist() == [[10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]
    assert registry.status("toy") == "loaded"


def test_a_plugin_may_add_only_translators_and_reuse_another_transport(install_plugin) -> None:
    toy = install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    install_plugin("robotx-adapters", ROBOT_PLUGIN, {"robotx": "{module}"})
    registry = PluginRegistry()
    policy = load_policy("robotx", registry=registry, offset=1.0)
    assert toy in sys.modules, "the transport's plugin is loaded on demand by its namespace"
    assert policy.get_action(_observation(2)).tolist() == [[1.0, 3.0], [5.0, 7.0]]
    # and the new translator can be swapped into the original adapter by name
    swapped = load_policy("toy", registry=registry, observation_translator="robotx.doubled")
    assert swapped.get_action(_observation(1)).tolist() == [[0.0, 2.0]]


def test_broken_plugin_is_reported_and_does_not_stop_the_others(install_plugin) -> None:
    install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    install_plugin("broken-adapters", BROKEN_PLUGIN, {"broken": "{module}"})
    install_plugin("bad-adapters", BAD_RECORD_PLUGIN, {"bad": "{module}"})
    registry = PluginRegistry()
    registry.load_all()
    assert registry.status("toy") == "loaded"
    assert "this_module_does_not_exist_anywhere" in registry.failures["broken"]
    assert "not callable" in registry.failures["bad"]
    assert registry.status("broken").startswith("failed: import of")
    with pytest.raises(PluginError, match="this_module_does_not_exist_anywhere"):
        load_policy("broken", registry=registry)
    assert load_policy("toy", registry=registry).get_action(_observation(1)).shape == (1, 2)
    with pytest.raises(PluginError, match="plugin '(bad|broken)' failed to load"):
        PluginRegistry(strict=True).load_all()


def test_unknown_name_lists_the_valid_names(install_plugin) -> None:
    install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    registry = PluginRegistry()
    with pytest.raises(UnknownAdapterError) as excinfo:
        load_policy("tyo", registry=registry)
    message = str(excinfo.value)
    assert "unknown adapter 'tyo'" in message
    assert "local" in message and "toy" in message
    with pytest.raises(UnknownAdapterError, match=r"unknown Transport 'toy.nope'; valid names: .*toy.echo"):
        load_policy("toy", registry=registry, transport="toy.nope")


def test_environment_variables_disable_autoload_and_block(install_plugin, monkeypatch) -> None:
    install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    install_plugin("robotx-adapters", ROBOT_PLUGIN, {"robotx": "{module}"})
    monkeypatch.setenv(BLOCK_PLUGINS_ENV, "robotx")
    registry = PluginRegistry()
    assert "robotx" not in registry.available_adapters()
    assert registry.status("robotx") == "blocked"
    with pytest.raises(PluginError, match="blocked"):
        registry.load_plugin("robotx")
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert PluginRegistry().available_adapters() == ["local"]


def test_plugins_registered_in_code_and_conflicts() -> None:
    import arena_adapters.local as local_plugin
    from arena_adapters import hookimpl

    registry = PluginRegistry(autoload=False)
    registry.load_plugin("local")

    @hookimpl
    def register_transports(register):
        register(TransportRecord(name="local.callable", protocol="x", factory=object))

    duplicate = types.ModuleType("duplicate_plugin")
    duplicate.register_transports = register_transports  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="'local.callable' is already registered"):
        registry.register_plugin(duplicate, "dup")
    assert registry.part(TransportRecord, "local.callable").factory is local_plugin.CallableTransport
    assert "dup" in registry.failures


def test_protocol_mismatch_is_a_config_error(install_plugin) -> None:
    install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    registry = PluginRegistry()
    with pytest.raises(ConfigError, match="speaks protocol 'local', but transport 'toy.echo' speaks 'toy'"):
        load_policy("toy", registry=registry, observation_translator="local.passthrough")
    assert isinstance(registry.part(ObservationTranslatorRecord, "local.passthrough"), ObservationTranslatorRecord)


def test_reset_reaches_the_transport(install_plugin) -> None:
    install_plugin("toy-adapters", TOY_PLUGIN, {"toy": "{module}"})
    policy = load_policy("toy", registry=PluginRegistry())
    policy.get_action(_observation(4))
    policy.reset(torch.tensor([3, 1]))
    policy.reset()
    resets = policy.transport.resets  # type: ignore[attr-defined]
    assert resets[0].tolist() == [1, 3] and resets[1] is None
    assert policy.scheduler is not None
    assert policy.scheduler.due_envs().tolist() == [0, 1, 2, 3]
    assert isinstance(resets[0], np.ndarray)


GR00T_ROBOT_PLUGIN = """
from arena_adapters import hookimpl
from arena_adapters.records import AdapterRecord

@hookimpl
def register_adapters(register):
    register(AdapterRecord(name="franka", protocol="gr00t", transport="gr00t.zmq",
                           observation_translator="gr00t.droid", action_translator="gr00t.droid"))
"""


def test_a_plugin_whose_parts_come_from_a_missing_plugin_is_not_loadable(install_plugin, monkeypatch, capsys) -> None:
    from arena_adapters import plugins
    from arena_adapters.cli import main

    install_plugin("robotx-adapters", ROBOT_PLUGIN, {"robotx": "{module}"})  # reuses toy.* parts; toy is absent
    registry = PluginRegistry()
    with pytest.raises(PluginError, match=r"adapter 'robotx' cannot be loaded: unknown Transport 'toy.echo'.*"
                                          r"no installed plugin is named 'toy'"):
        registry.check_dependencies("robotx")
    assert registry.status("robotx").startswith("not loadable: unknown Transport 'toy.echo'")
    monkeypatch.setattr(plugins, "_default_registry", None)
    assert main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("robotx "))
    assert "robotx-adapters" in row and "not loadable: unknown Transport 'toy.echo'" in row


def _path_without(tmp_path: Path, hidden: tuple[str, ...]) -> list[str]:
    """``sys.path`` as if the distributions ``hidden`` were never installed: site-packages is replaced
    by a directory of symlinks to all its other entries, and folders holding their metadata (an
    editable install's ``src/*.egg-info``) are left out."""
    site = tmp_path / "site-without"
    site.mkdir()
    real = Path(sysconfig.get_paths()["purelib"])
    prefixes = tuple(name.replace("-", "_") + suffix for name in hidden for suffix in ("-", "."))
    for entry in real.iterdir():
        if not entry.name.removeprefix("__editable__.").startswith(prefixes):
            (site / entry.name).symlink_to(entry)
    path = []
    for entry in sys.path:
        if Path(entry) == real:
            path.append(str(site))
        elif not (Path(entry).is_dir() and any(child.name.startswith(prefixes) for child in Path(entry).iterdir())):
            path.append(entry)
    return path


def test_a_missing_first_party_plugin_is_named_with_its_pip_install(install_plugin, tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:
    from arena_adapters import plugins
    from arena_adapters.cli import main

    install_plugin("franka-adapters", GR00T_ROBOT_PLUGIN, {"franka": "{module}"})
    # the example third-party plugin (examples/arena-adapters-vlaeval) is hidden too: the listing is first-party only
    monkeypatch.setattr(sys, "path", _path_without(tmp_path, ("arena-adapters-gr00t", "arena-adapters-openpi",
                                                              "arena-adapters-vlaeval")))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugins, "_default_registry", None)

    assert main(["list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in listing[1:]) == ["franka", "local", "openvla"], "gr00t, openpi hidden"
    franka = next(line for line in listing if line.startswith("franka "))
    assert "not loadable: Transport 'gr00t.zmq' comes from plugin 'gr00t', which is not installed" in franka
    assert "pip install arena-adapters-gr00t" in franka
    assert main(["info", "franka"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "pip install arena-adapters-gr00t" in captured.err
    assert main(["info", "openpi"]) == 2
    assert ("unknown adapter 'openpi': its plugin is not installed; install it with: pip install arena-adapters-openpi"
            in capsys.readouterr().err)
