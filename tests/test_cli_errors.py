"""The command line's error paths: each is a clear message and an exit code, never a traceback."""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest

from arena_adapters.cli import main
from arena_adapters.testing.in_process import InProcessServer

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield int(listener.getsockname()[1])


@pytest.fixture
def openvla_server() -> Iterator[Any]:
    server_module = pytest.importorskip("arena_adapters_openvla.server")
    server = server_module.start_reference_server(port=0)
    yield server
    server.stop()


def test_unknown_flags_and_abbreviations_exit_2_with_a_message(capsys: Capture) -> None:
    assert main(["info", "local", "--bogus-flag", "1"]) == 2
    captured = capsys.readouterr()
    assert "arena-adapters info: error: unrecognized arguments: --bogus-flag 1" in captured.err and captured.out == ""
    assert main(["list", "--no-lod"]) == 2  # not taken for --no-load
    assert "arena-adapters list: error: unrecognized arguments: --no-lod" in capsys.readouterr().err
    assert main(["demo", "--adapter", "local", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["eval", "--adapter", "local", "--executesteps", "3"]) == 2  # eval checks adapter flags itself
    assert "unknown argument(s) ['--executesteps', '3'] for eval --adapter local" in capsys.readouterr().err


def test_adapter_flags_still_reach_the_adapter(capsys: Capture) -> None:
    server = InProcessServer()
    code = main(["eval", "--adapter", "local", "--policy", server.endpoint, "--execute-steps", "4", "--num-envs", "2",
                 "--num-episodes", "2", "--max-steps", "8", "--no-report", "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    assert "reach local:" in capsys.readouterr().out
    assert server.policy.resets, "the policy given by --policy was used"


@pytest.mark.parametrize("port", ["99999", "-5", "65536", "http"])
def test_serve_port_out_of_range_is_a_usage_error(port: str, capsys: Capture) -> None:
    assert main(["serve", "openpi", "--port", port]) == 2
    err = capsys.readouterr().err
    assert "argument --port: expected a port number (0-65535" in err and "Traceback" not in err


@pytest.mark.parametrize("adapter", ["gr00t", "openpi", "openvla"])
def test_serve_on_a_busy_port_is_a_clean_transport_error(adapter: str, busy_port: int, capsys: Capture) -> None:
    pytest.importorskip(f"arena_adapters_{adapter}")
    assert main(["serve", adapter, "--port", str(busy_port)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("arena-adapters serve: TransportError: ")
    assert "reference server cannot serve on" in captured.err and str(busy_port) in captured.err
    assert "the port is in use" in captured.err
    assert "pick another --port" in captured.err and "Traceback" not in captured.err
    assert "serving" not in captured.out


def test_serve_names_a_missing_server_library_and_its_install(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    pytest.importorskip("arena_adapters_openvla")
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as without the openvla server extra
    assert main(["serve", "openvla", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "the openvla reference server needs the module 'fastapi', which is not installed" in err
    assert "pip install 'arena-adapters[openvla]'" in err


@pytest.mark.parametrize("flags, message", [
    (["--max-steps", "-1"], "argument --max-steps: expected an integer >= 1, got -1"),
    (["--max-steps", "0"], "argument --max-steps: expected an integer >= 1, got 0"),
    (["--num-envs", "0"], "argument --num-envs: expected an integer >= 1, got 0"),
    (["--num-episodes", "-3"], "argument --num-episodes: expected an integer >= 1, got -3"),
])
def test_negative_or_zero_limits_are_usage_errors(flags: list[str], message: str, capsys: Capture) -> None:
    assert main(["eval", "--adapter", "local", *flags]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_env_lists_the_valid_ones(capsys: Capture) -> None:
    assert main(["eval", "--adapter", "local", "--env", "nope"]) == 2
    err = capsys.readouterr().err
    assert "UnknownEnvironmentError: unknown environment 'nope'; valid names: reach" in err


def test_an_action_width_mismatch_is_named_with_its_fix(openvla_server: Any, capsys: Capture) -> None:
    common = ["eval", "--adapter", "openvla", "--endpoint", openvla_server.endpoint, "--num-envs", "2",
              "--num-episodes", "2", "--no-report", "--progress", "none"]
    assert main(common) == 2
    err = capsys.readouterr().err
    assert "ActionError: action width mismatch: adapter 'openvla' returns 7-D actions, the environment expects 8-D" in err
    assert "--action-dim 8" in err and "Traceback" not in err
    assert main([*common, "--action-dim", "8", "--max-steps", "2"]) == 0  # the fix it names works
    assert "reach openvla:" in capsys.readouterr().out


def test_version_names_the_core_and_the_installed_plugins(capsys: Capture) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"arena-adapters {metadata.version('arena-adapters')}")
    for plugin in ("gr00t", "openpi", "openvla"):
        try:
            assert f"{plugin} {metadata.version('arena-adapters-' + plugin)}" in out
        except metadata.PackageNotFoundError:
            assert plugin not in out


def test_check_works_for_the_local_adapter(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    monkeypatch.setenv("ARENA_ADAPTERS_CHECK_ADAPTER", "local")  # restored after the test
    monkeypatch.delitem(sys.modules, "arena_adapters.testing.check_adapter", raising=False)
    assert main(["check", "local"]) == 0, capsys.readouterr().out
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 10 and "failed" not in summary and "error" not in summary, summary
    sys.modules.pop("arena_adapters.testing.check_adapter", None)
