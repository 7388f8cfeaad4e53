"""The probe and the CLI: ``arena-adapters ping openvla`` / ``serve openvla``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from arena_adapters_openvla.probe import probe_server
from arena_adapters_openvla.server import ReferenceServer

from arena_adapters.cli import main

ServerFactory = Callable[..., ReferenceServer]


def test_probe_passes_against_both_variants(openvla_server: ReferenceServer, oft_server: ReferenceServer) -> None:
    report = probe_server(openvla_server.endpoint, action_dim=7)
    assert report.ok, report.failure
    assert [step.name for step in report.steps] == [
        "health GET /openapi.json", "act (openvla observation)", "reply shape", "latency x3"
    ]
    assert report.steps[2].detail == "float64 (7,)"
    oft = probe_server(oft_server.endpoint, variant="oft", encoded=True)
    assert oft.ok, oft.failure
    assert oft.steps[2].detail == "8 x float64 (7,)"


def test_probe_reports_the_wrong_variant_at_the_act_step(openvla_server: ReferenceServer) -> None:
    report = probe_server(openvla_server.endpoint, variant="oft")
    assert not report.ok and report.steps[-1].name == "act (oft observation)"
    assert "ServerError" in report.failure


def test_probe_checks_the_reply_shape(start_server: ServerFactory) -> None:
    server = start_server(lambda payload: np.zeros((2, 7)))
    report = probe_server(server.endpoint)
    assert not report.ok and report.steps[-1].name == "reply shape"
    assert "bare float array" in report.failure
    width = probe_server(start_server().endpoint, action_dim=8)
    assert not width.ok and "expected 8 action components, got 7" in width.failure


def test_probe_of_a_dead_server_fails_without_raising(start_server: ServerFactory) -> None:
    server = start_server()
    endpoint = server.endpoint
    server.stop()
    report = probe_server(endpoint, timeout=1.0)
    assert not report.ok and len(report.steps) == 1 and "cannot connect" in report.failure


def test_probe_bad_options_fail_without_raising() -> None:
    assert not probe_server("tcp://127.0.0.1:5555").ok
    assert not probe_server("http://127.0.0.1:9", variant="pi0").ok


def test_cli_ping_exit_codes(oft_server: ReferenceServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "openvla", "--endpoint", oft_server.endpoint, "--variant", "oft", "--repeats", "1"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["ping", "openvla", "--endpoint", oft_server.endpoint, "--timeout", "2"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cli_serve_runs_the_reference_server(tmp_path: Any) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "arena_adapters", "serve", "openvla", "--port", "0", "--variant", "oft",
         "--chunk-size", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serving openvla on http://127.0.0.1:"), line
        endpoint = line.split(" on ")[1].split()[0]
        report = probe_server(endpoint, variant="oft", repeats=0)
        assert report.ok, report.failure
        assert report.steps[-1].detail == "5 x float64 (7,)"
    finally:
        process.terminate()
        process.wait(timeout=10)
