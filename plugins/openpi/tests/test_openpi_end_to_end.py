"""The ``openpi`` adapter end to end: load_policy, the conformance kit, the CLI, a killed server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_openpi.examples import aloha_observation, libero_observation
from arena_adapters_openpi.probe import probe_server
from arena_adapters_openpi.server import ReferenceServer

from arena_adapters import load_policy
from arena_adapters.cli import main as cli_main
from arena_adapters.errors import ObservationError, TransportError
from arena_adapters.examples import droid_observation
from arena_adapters.testing.conformance import AdapterContract

ServerFactory = Callable[..., ReferenceServer]


class TestOpenpiContract(AdapterContract):
    adapter = "openpi"


def droid_state(obs: dict[str, Any]) -> torch.Tensor:
    return torch.cat([obs["policy"]["joint_pos"], obs["policy"]["gripper_pos"]], dim=1).double()


def test_load_policy_end_to_end_with_droid_values(server_factory: ServerFactory, builtin_chunk: Any) -> None:
    server = server_factory(infer_in_thread=True)
    obs = droid_observation(6)
    chunks = np.stack([builtin_chunk(row) for row in droid_state(obs).numpy()])  # (6, 10, 8)
    with load_policy("openpi", endpoint=server.endpoint, instruction="pick up the cup") as policy:
        for step in range(8):
            actions = policy.get_action(obs)
            assert actions.shape == (6, 8) and actions.dtype == torch.float32
            np.testing.assert_array_equal(actions.numpy(), chunks[:, step])
        assert policy.stats.queries == 1 and server.requests == 6
        policy.get_action(obs)  # the default execute_steps is 8: the 9th step queries again
        assert policy.stats.queries == 2 and server.requests == 12
        policy.reset(torch.tensor([2, 4]))
        policy.get_action(obs)
        assert server.requests == 14 and policy.stats.env_requests == 14


@pytest.mark.parametrize("horizon", [10, 15, 50])
def test_reply_horizon_drives_the_schedule(server_factory: ServerFactory, horizon: int) -> None:
    server = server_factory(action_horizon=horizon)
    obs = droid_observation(2)
    with load_policy("openpi", endpoint=server.endpoint, execute_steps=12) as policy:
        for _ in range(21):  # queries at t=0, 10, 20 for H=10; at t=0, 12 when H >= 12
            policy.get_action(obs)
        assert policy.scheduler is not None and policy.scheduler.horizon == horizon
        assert policy.stats.queries == (3 if horizon < 12 else 2)


@pytest.mark.parametrize(("embodiment", "make", "dim"), [
    ("libero", libero_observation, 7), ("aloha", aloha_observation, 14)])
def test_other_embodiments_end_to_end(server_factory: ServerFactory, embodiment: str, make: Any, dim: int) -> None:
    server = server_factory()
    obs = make(3, seed=13, height=96, width=128)
    with load_policy("openpi", endpoint=server.endpoint, embodiment=embodiment, instruction="go") as policy:
        actions = policy.get_action(obs)
    assert actions.shape == (3, dim)
    assert probe_server(server.endpoint, 5.0, embodiment=embodiment).ok


def test_action_dim_option_fits_smaller_envs(server: ReferenceServer) -> None:
    with load_policy("openpi", endpoint=server.endpoint, action_dim=7) as policy:
        assert policy.get_action(droid_observation(2)).shape == (2, 7)


def test_bad_observation_is_refused_before_anything_is_sent(server: ReferenceServer) -> None:
    obs = droid_observation(2)
    obs["policy"]["joint_pos"] = obs["policy"]["joint_pos"][:, :6]
    with load_policy("openpi", endpoint=server.endpoint) as policy, pytest.raises(
        ObservationError, match=r"policy.joint_pos.*expected 7 values per env, got 6"
    ):
        policy.get_action(obs)
    assert server.requests == 0


def test_probe_reports_every_step(server: ReferenceServer) -> None:
    report = probe_server(server.endpoint, 5.0)
    assert report.ok, report.failure
    assert [step.name for step in report.steps] == [
        "healthz", "metadata frame", "infer (droid)", "reply actions shape", "infer x3 (warm)"]
    assert "H=10, D=8" in report.steps[3].detail


def test_probe_flags_a_wrong_action_size(server: ReferenceServer) -> None:
    report = probe_server(server.endpoint, 5.0, action_dim=7)
    assert not report.ok and "expected D=7" in report.failure


def test_cli_ping_exit_codes(server: ReferenceServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["ping", "openpi", "--endpoint", server.endpoint, "--timeout", "5", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "healthz" in out and "OK" in out
    port = server.port
    server.stop()
    assert cli_main(["ping", "openpi", "--endpoint", f"ws://127.0.0.1:{port}", "--timeout", "1"]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.fixture
def served_by_cli() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``arena-adapters serve openpi --port 0`` in a child process."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from arena_adapters.cli import main; sys.exit(main())",
         "serve", "openpi", "--port", "0", "--action-horizon", "15", "--metadata", '{"reset_pose": [1, 2]}'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:\d+", line)
        assert match, f"unexpected output from serve: {line!r}"
        yield process, match.group(0)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_cli_served_server_killed_then_restarted(
    served_by_cli: tuple[subprocess.Popen[str], str], server_factory: ServerFactory
) -> None:
    process, endpoint = served_by_cli
    obs = droid_observation(4)
    # Each pooled connection the kill left behind costs one resend when it is next used (the kit
    # counts a stale connection as an attempt): up to 4 here, one per env.
    with load_policy("openpi", endpoint=endpoint, retry_attempts=4, timeout=5.0) as policy:
        policy.connect()
        assert policy.transport.metadata() == {"reset_pose": [1, 2]}
        assert policy.get_action(obs).shape == (4, 8)
        assert policy.scheduler is not None and policy.scheduler.horizon == 15
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        policy.reset()
        with pytest.raises(TransportError):
            policy.get_action(obs)
        # The kit's fan-out returns at the first env's error while the other envs' requests end
        # their own (bounded) resends in the background; let them end before the restart.
        time.sleep(0.5)
        port = int(endpoint.rsplit(":", 1)[1])
        restarted = server_factory(port=port)
        policy.reset()
        assert policy.get_action(obs).shape == (4, 8)
        assert restarted.requests == 4
