"""The arena-adapters command line: list, info, and the error paths of serve/ping."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arena_adapters.cli import main
from arena_adapters.cli.command import parse_option_flags
from arena_adapters.errors import ConfigError
from arena_adapters.options import Option


def test_list_shows_distribution_version_protocol_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "PROTOCOL", "STATUS"]
    local = next(line.split() for line in lines if line.startswith("local "))
    assert local[:2] == ["local", "arena-adapters"] and local[3:] == ["local", "loaded"]


def test_info_lists_parts_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "local"]) == 0
    out = capsys.readouterr().out
    assert "transport 'local.callable'" in out
    assert "policy (object, required)" in out
    assert "execute_steps (int, default None)" in out


def test_unknown_adapter_exits_2_and_lists_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown adapter 'nosuch'; valid names:" in err and "local" in err


def test_adapters_without_server_or_probe_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "local", "--endpoint", "x"]) == 2
    assert "adapter 'local' has no probe" in capsys.readouterr().err
    assert main(["serve", "local"]) == 2
    assert "adapter 'local' has no reference server" in capsys.readouterr().err


def test_option_flags_are_parsed_from_declarations() -> None:
    options = [Option("api_token", str, None), Option("flat", bool, False)]
    assert parse_option_flags(["--api-token", "s3cret", "--flat"], options, "ping x") == {
        "api_token": "s3cret",
        "flat": "true",
    }
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['--tokn', 'a'\] for ping x; its options: --api-token, --flat"):
        parse_option_flags(["--tokn", "a"], options, "ping x")


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "arena_adapters", "list", "--no-load"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "local" in result.stdout
