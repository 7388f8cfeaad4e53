"""The probe and the ``arena-adapters ping/serve gr00t`` commands."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from arena_adapters_gr00t.probe import probe_server
from arena_adapters_gr00t.server import ReferenceServer
from arena_adapters_gr00t.transport import Gr00tTransport

from arena_adapters.cli import main

Start = Callable[..., ReferenceServer]


@pytest.mark.parametrize("fmt", ["flat", "nested"])
def test_probe_passes_and_finds_the_format(fmt: str, start_server: Start) -> None:
    server = start_server(format=fmt)
    report = probe_server(server.endpoint, 5.0, batch=2, repeat=2)
    assert report.ok, report.failure
    names = [step.name for step in report.steps]
    assert names == ["ping", "get_modality_config", "get_action (B=2)", "reply shapes", "latency x2"]
    assert f"{fmt} observation accepted" in report.steps[2].detail
    prefix = "action." if fmt == "flat" else ""
    assert f"{prefix}joint_position float32 (2, 32, 7)" in report.steps[3].detail
    assert all(step.latency_s > 0 for step in report.steps)


def test_probe_with_token(start_server: Start) -> None:
    server = start_server(api_token="s3cret")
    assert probe_server(server.endpoint, 5.0, token="s3cret", repeat=0).ok
    refused = probe_server(server.endpoint, 5.0, repeat=0)
    assert not refused.ok and "Unauthorized" in refused.failure
    assert [step.name for step in refused.steps] == ["ping"]


def test_probe_of_a_dead_server_fails_quickly(free_port: int) -> None:
    started = time.monotonic()
    report = probe_server(f"tcp://127.0.0.1:{free_port}", 0.5)
    assert time.monotonic() - started < 2.0
    assert not report.ok and report.failure.startswith("ping failed: ")


def test_probe_reports_bad_replies(start_server: Start) -> None:
    def short_horizon(observation: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"action.joint_position": np.zeros((1, 5, 7), np.float32),
                "action.gripper_position": np.zeros((1, 5, 1), np.float32)}

    short_horizon.modality_config = ReferenceServer().policy.get_modality_config()  # type: ignore[attr-defined]
    server = start_server(short_horizon)
    report = probe_server(server.endpoint, 5.0, repeat=0)
    assert not report.ok
    assert report.failure.startswith("reply shapes failed: action.joint_position: expected float (B=1, H=32, D)")


def test_probe_tries_nested_when_a_permissive_server_takes_flat_with_the_wrong_reply(start_server: Start) -> None:
    def permissive(observation: dict[str, Any]) -> dict[str, np.ndarray]:  # takes any observation
        return {"joint_position": np.zeros((1, 32, 7), np.float32), "gripper_position": np.zeros((1, 32, 1), np.float32)}

    permissive.modality_config = ReferenceServer().policy.get_modality_config()  # type: ignore[attr-defined]
    server = start_server(permissive)
    report = probe_server(server.endpoint, 5.0, repeat=1)
    assert report.ok, report.failure
    assert report.steps[2].detail.startswith("nested observation accepted (flat: reply of the wrong shapes")
    assert "joint_position float32 (1, 32, 7)" in report.steps[3].detail


def test_probe_reports_an_auth_failure_at_get_modality_config(start_server: Start) -> None:
    server = start_server(api_token="s3cret")
    report = probe_server(server.endpoint, 5.0, token="wrong", repeat=0)
    assert not report.ok and "Unauthorized" in report.failure and "wrong" not in report.failure


def test_probe_of_a_server_that_describes_nothing_uses_droid(start_server: Start) -> None:
    def fn(observation: dict[str, Any]) -> dict[str, np.ndarray]:
        assert observation["state.joint_position"].shape == (1, 1, 7)
        return {"action.joint_position": np.zeros((1, 32, 7), np.float32),
                "action.gripper_position": np.zeros((1, 32, 1), np.float32)}

    server = start_server(fn)
    report = probe_server(server.endpoint, 5.0, repeat=0)
    assert report.ok, report.failure
    assert "describes nothing" in report.steps[1].detail


def test_probe_n15(start_server: Start) -> None:
    server = start_server(protocol_version="n1.5")
    report = probe_server(server.endpoint, 5.0, protocol_version="n1.5", repeat=1)
    assert report.ok, report.failure


def test_ping_command(start_server: Start, capsys: pytest.CaptureFixture[str], free_port: int) -> None:
    server = start_server(api_token="t0k")
    assert main(["ping", "gr00t", "--endpoint", server.endpoint, "--timeout", "5", "--token", "t0k",
                 "--batch", "3", "--image-size", "90x160"]) == 0
    out = capsys.readouterr().out
    assert "get_action (B=3)" in out and out.rstrip().endswith("OK")
    assert main(["ping", "gr00t", "--endpoint", f"tcp://127.0.0.1:{free_port}", "--timeout", "0.3"]) == 1
    assert "FAILED: ping failed:" in capsys.readouterr().out


def test_serve_command_then_kill(free_port: int) -> None:
    command = "import sys; from arena_adapters.cli import main; sys.exit(main())"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "serve", "gr00t", "--port", str(free_port), "--api-token", "k"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"tcp://127.0.0.1:{free_port}" in line, line + (process.stderr.read() if process.stderr else "")
        with Gr00tTransport(f"tcp://127.0.0.1:{free_port}", timeout=5, api_token="k") as transport:
            assert transport.ping()["status"] == "ok"
            assert transport.kill_server() is None
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.communicate()
