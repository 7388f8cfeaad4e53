"""``arena-adapters demo`` through each first-party protocol, with the server in a background process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from arena_adapters.cli import main
from arena_adapters.errors import ConfigError, TransportError, UnknownAdapterError
from arena_adapters.evaluation import EvalProgress, read_json
from arena_adapters.evaluation.demo import DEMO_ADAPTERS, run_demo
from arena_adapters.evaluation.server_process import ServerProcess


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("adapter", DEMO_ADAPTERS)
def test_demo_command_serves_the_expert_through_each_protocol(
    adapter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / f"{adapter}.json"
    code = main(["demo", "--adapter", adapter, "--num-envs", "4", "--num-episodes", "10",
                 "--report", str(report), "--progress", "log"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"reach {adapter}: 10/10 episodes on 4 envs" in captured.out
    assert "latency        p50" in captured.out
    assert f"[reach/{adapter}] 10/10 episodes" in captured.err
    data = read_json(report)
    assert data["adapter"] == adapter and data["completed_episodes"] == 10
    assert data["success_rate"] > 0.9
    assert data["endpoint"].split("://")[0] in {"gr00t": ("tcp",), "openpi": ("ws",), "openvla": ("http",)}[adapter]
    assert data["requests"]["count"] > 0 and data["latency_ms"]["p50"] > 0
    assert _gone(data["server_pid"])


def test_demo_in_process_with_the_local_adapter() -> None:
    result = run_demo("local", num_envs=4, num_episodes=9, env_options={"image_height": 60, "image_width": 100})
    assert result.completed == 9 and result.success_rate > 0.9
    assert "endpoint" not in result.info


def test_ctrl_c_during_the_demo_stops_the_server(tmp_path: Path) -> None:
    def interrupt(progress: EvalProgress) -> None:
        if progress.finished >= 2:
            raise KeyboardInterrupt

    result = run_demo("openpi", num_envs=2, num_episodes=50, callbacks=[interrupt],
                      env_options={"image_height": 90, "image_width": 160}, report_path=tmp_path / "r.json")
    assert result.interrupted and 2 <= result.completed < 50
    assert read_json(tmp_path / "r.json")["interrupted"] is True
    assert _gone(result.info["server_pid"])


def test_unknown_demo_adapter() -> None:
    with pytest.raises(ConfigError, match="the demo supports adapters gr00t, openpi, openvla, local; got 'nope'"):
        run_demo("nope")


def test_a_server_that_dies_at_start_is_reported_with_its_stderr() -> None:
    server = ServerProcess([sys.executable, "-c", "import sys; sys.stderr.write('boom: no model'); sys.exit(3)"])
    with pytest.raises(TransportError, match=r"(?s)the server process exited with code 3: .*boom: no model"):
        server.start()
    assert not server.running


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
