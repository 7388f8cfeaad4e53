"""``arena-adapters demo`` through each first-party protocol, with the server in a background process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from arena_adapters.cli import main
from arena_adapters.errors import ConfigError, TransportError, UnknownAdapterError
from arena_adapters.evaluation import EvalProgress, read_json
from arena_adapters.evaluation.demo import FIRST_PARTY_ADAPTERS, demo_adapters, run_demo
from arena_adapters.evaluation.server_process import ServerProcess


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("adapter", FIRST_PARTY_ADAPTERS)
def test_demo_command_serves_the_expert_through_each_protocol(
    adapter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / f"{adapter}.json"
    code = main(["demo", "--adapter", adapter, "--num-envs", "3", "--num-episodes", "4", "--env-option",
                 "num_targets=2", "--env-option", "image_height=90", "--env-option", "image_width=160",
                 "--report", str(report), "--progress", "log"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"reach {adapter}: 4/4 episodes on 3 envs" in captured.out
    assert "latency        p50" in captured.out and "requests       sent" in captured.out
    assert f"[reach/{adapter}] 4/4 episodes" in captured.err
    data = read_json(report)
    assert data["adapter"] == adapter and data["completed_episodes"] == 4
    assert data["success_rate"] > 0.7
    assert data["endpoint"].split("://")[0] in {"gr00t": ("tcp",), "openpi": ("ws",), "openvla": ("http",)}[adapter]
    assert data["requests"]["count"] > 0 and data["latency_ms"]["p50"] > 0
    compared = data["requests"]["compared"]
    assert compared["sent"] == {"queries": data["requests"]["count"],
                                "env_observations": data["requests"]["env_observations"]}
    assert compared["sent"] == compared["ideal"]  # the replay scheduler asks exactly when an env needs a chunk
    assert compared["arena_style"]["env_observations"] >= compared["ideal"]["env_observations"]
    assert compared["chunk_steps"] == 8
    assert _gone(data["server_pid"])


@pytest.mark.parametrize("adapter", FIRST_PARTY_ADAPTERS)
def test_the_null_policy_is_served_by_every_reference_server(adapter: str) -> None:
    result = run_demo(adapter, policy="null", num_envs=2, num_episodes=2, figure=False,
                      env_options={"max_episode_length": 12, "image_height": 48, "image_width": 64})
    assert result.info["served_policy"] == "null" and result.completed == 2
    assert [e.length for e in result.episodes] == [12, 12] and result.successes == 0  # zeros never grasp
    assert result.queries > 0 and _gone(result.info["server_pid"])


def test_every_first_party_adapter_and_local_serve_the_expert() -> None:
    assert set(demo_adapters()) >= {*FIRST_PARTY_ADAPTERS, "local"}


def test_demo_in_process_with_the_local_adapter() -> None:
    result = run_demo("local", num_envs=4, num_episodes=6, env_options={"image_height": 60, "image_width": 100})
    assert result.completed == 6 and result.success_rate > 0.8
    assert "endpoint" not in result.info
    assert result.request_comparison is not None and result.request_comparison.chunk_steps == 8


def test_ctrl_c_during_the_demo_stops_the_server(tmp_path: Path) -> None:
    def interrupt(progress: EvalProgress) -> None:
        if progress.finished >= 2:
            raise KeyboardInterrupt

    result = run_demo("openpi", num_envs=2, num_episodes=50, callbacks=[interrupt], report_path=tmp_path / "r.json",
                      env_options={"image_height": 90, "image_width": 160, "num_targets": 1})
    assert result.interrupted and 2 <= result.completed < 50
    assert read_json(tmp_path / "r.json")["interrupted"] is True
    assert _gone(result.info["server_pid"])


def test_unknown_demo_adapter_and_policy() -> None:
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'nope'; valid names: .*gr00t"):
        run_demo("nope")
    with pytest.raises(ConfigError, match=r"option 'policy': expected one of \['expert', 'null'\], got 'random'"):
        run_demo("gr00t", policy="random")


def test_a_server_that_dies_at_start_is_reported_with_its_stderr() -> None:
    server = ServerProcess([sys.executable, "-c", "import sys; sys.stderr.write('boom: no model'); sys.exit(3)"])
    with pytest.raises(TransportError, match=r"(?s)the server process exited with code 3: .*boom: no model"):
        server.start()
    assert not server.running


def test_server_options_override_the_registered_ones_in_a_process_of_its_own() -> None:
    import json

    from arena_adapters.envs.expert_server import served_expert

    with ServerProcess.for_expert("gr00t", policy="null", server_options={"max_message_bytes": 1 << 20}) as server:
        options = json.loads(server.command[server.command.index("--server-options") + 1])
        assert options == {**served_expert("gr00t").server_options, "max_message_bytes": 1 << 20}
        assert server.endpoint.startswith("tcp://127.0.0.1:")
    with pytest.raises(ConfigError, match="must be importable by name"):
        ServerProcess.for_policy("gr00t", lambda: None, {})


def test_a_silent_server_is_stopped_after_the_ready_timeout() -> None:
    server = ServerProcess([sys.executable, "-c", "import time; time.sleep(60)"], ready_timeout_s=1.0)
    with pytest.raises(TransportError, match="did not report ready in 1 s"):
        server.start()
    assert server.pid is not None and _gone(server.pid)


def test_a_missing_plugin_is_named_before_any_process_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from arena_adapters.evaluation import demo
    from arena_adapters.plugins import PluginRegistry

    monkeypatch.setattr(demo, "default_registry", lambda: PluginRegistry(autoload=False))
    monkeypatch.setattr(demo.ServerProcess, "start", lambda self: pytest.fail("a server process was started"))
    with pytest.raises(UnknownAdapterError, match=r"unknown adapter 'gr00t'.*pip install 'arena-adapters\[gr00t\]'"):
        run_demo("gr00t")


def test_reference_servers_and_served_experts_import_without_torch() -> None:
    import subprocess

    modules = ["arena_adapters.envs.expert_server", "arena_adapters_gr00t.server", "arena_adapters_gr00t.served_expert",
               "arena_adapters_openpi.server", "arena_adapters_openpi.served_expert",
               "arena_adapters_openvla.server", "arena_adapters_openvla.served_expert"]
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"  # a served-expert process starts without importing torch


def test_serve_policy_null_from_the_command_line(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from arena_adapters_gr00t.server import ReferenceServer

    from arena_adapters import load_policy
    from arena_adapters.envs import make_environment

    replies: list[torch.Tensor] = []

    def query_then_stop(server: ReferenceServer) -> None:
        observation, _ = make_environment("reach", num_envs=2, image_height=48, image_width=64).reset()
        with load_policy("gr00t", endpoint=server.endpoint) as policy:
            replies.append(policy.get_action(observation))

    monkeypatch.setattr(ReferenceServer, "wait", query_then_stop)
    assert main(["serve", "gr00t", "--policy", "null", "--port", "0"]) == 0
    assert "serving gr00t on tcp://127.0.0.1:" in capsys.readouterr().out
    assert replies[0].shape == (2, 8) and not replies[0].any()
