"""``arena-adapters new-plugin`` writes packages that pass ``arena-adapters check`` as generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arena_adapters.cli import main
from arena_adapters.errors import ConfigError
from arena_adapters.scaffold import generate


def install_and_check(package: Path, name: str, site: Path) -> subprocess.CompletedProcess[str]:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True, capture_output=True, text=True)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "arena_adapters", "check", name], capture_output=True, text=True,
                          env=environment, timeout=300)


def test_a_new_protocol_plugin_passes_check_as_generated(tmp_path: Path) -> None:
    assert main(["new-plugin", "toyproto", "--new-protocol", "--directory", str(tmp_path)]) == 0
    package = tmp_path / "arena-adapters-toyproto"
    plugin_source = (package / "src/arena_adapters_toyproto/plugin.py").read_text()
    for hook in ("register_transports", "register_observation_translators", "register_action_translators",
                 "register_adapters", "register_reference_servers", "register_probes"):
        assert f"def {hook}(" in plugin_source  # check below runs the server and probe clauses against them
    result = install_and_check(package, "toyproto", tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_a_plugin_reusing_the_gr00t_transport_passes_check_as_generated(tmp_path: Path) -> None:
    pytest.importorskip("arena_adapters_gr00t")
    package = generate("myrobot", tmp_path, reuse_transport="gr00t.zmq")
    assert 'transport="gr00t.zmq"' in (package / "src/arena_adapters_myrobot/plugin.py").read_text()
    assert "arena-adapters-gr00t" in (package / "pyproject.toml").read_text()
    result = install_and_check(package, "myrobot", tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.parametrize(("name", "options", "message"), [
    ("My-Robot", {}, "lowercase identifier"),
    ("robot", {"reuse_transport": "ros.bridge"}, "templates exist for"),
])
def test_bad_requests_are_clear_errors(tmp_path: Path, name: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate(name, tmp_path, **options)


def test_an_existing_target_is_not_overwritten(tmp_path: Path) -> None:
    generate("robot", tmp_path)
    with pytest.raises(ConfigError, match="exists already"):
        generate("robot", tmp_path)
