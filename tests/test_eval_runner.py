"""The evaluation runner: reports and figures, Ctrl-C, errors, progress display, and the eval command."""

from __future__ import annotations

import builtins
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import arena_adapters as aa
from arena_adapters.cli import main
from arena_adapters.envs.reach import ReachEnv
from arena_adapters.envs.reach_serving import LocalReachExpert
from arena_adapters.evaluation import EvalProgress, ProgressDisplay, evaluate, read_json

SMALL = {"image_height": 60, "image_width": 100, "num_targets": 1}  # one moving target: short episodes


def _policy(**options: Any) -> aa.Policy:
    return aa.load_policy("local", policy=LocalReachExpert(), execute_steps=8, **options)


def test_report_and_figure_are_written(tmp_path: Path) -> None:
    report = tmp_path / "out" / "run.json"
    with _policy() as policy:
        result = evaluate(policy, ReachEnv(num_envs=4, **SMALL), 10, report_path=report,
                          info={"adapter": "local", "environment": "reach"})
    assert result.report_path == report and result.figure_path == tmp_path / "out" / "run.png"
    assert result.figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = read_json(report)
    assert data["adapter"] == "local" and data["environment"] == "reach"
    assert data["num_episodes"] == 10 and data["completed_episodes"] == 10 and data["complete"] is True
    assert data["interrupted"] is False and data["error"] is None
    assert data["success_rate"] == result.success_rate > 0.9
    assert len(data["episodes"]) == 10 and [e["index"] for e in data["episodes"]] == list(range(10))
    latencies = np.array(data["latencies_ms"])
    assert data["latency_ms"]["count"] == len(latencies) == data["requests"]["count"] > 0
    assert data["latency_ms"]["p50"] == pytest.approx(np.percentile(latencies, 50), abs=1e-3)
    assert data["latency_ms"]["p99"] == pytest.approx(np.percentile(latencies, 99), abs=1e-3)
    assert data["requests"]["env_observations"] >= data["requests"]["count"]
    assert data["steps"]["count"] == result.steps and data["steps"]["per_s"] > 0
    assert data["instruction"] == ReachEnv(num_envs=1).cfg.task_description
    assert "success rate" in result.summary() and "p95" in result.summary()


def test_ctrl_c_stops_cleanly_and_writes_the_partial_report(tmp_path: Path) -> None:
    seen: list[EvalProgress] = []

    def interrupt_after_some_episodes(progress: EvalProgress) -> None:
        seen.append(progress)
        if progress.finished >= 5:
            raise KeyboardInterrupt

    report = tmp_path / "partial.json"
    with _policy() as policy:
        result = evaluate(policy, ReachEnv(num_envs=4, **SMALL), 40, callbacks=[interrupt_after_some_episodes],
                          report_path=report)
    assert result.interrupted and not result.complete
    assert 5 <= result.completed < 40
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["complete"] is False
    assert data["completed_episodes"] == result.completed == len(data["episodes"])
    assert report.with_suffix(".png").exists()
    assert "interrupted" in result.summary()
    assert [p.step for p in seen] == list(range(1, len(seen) + 1))


def test_an_error_is_recorded_in_the_partial_report_and_raised(tmp_path: Path) -> None:
    calls = {"n": 0}

    def failing(observation: dict[str, Any]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("model crashed")
        return LocalReachExpert()(observation)

    report = tmp_path / "failed.json"
    with aa.load_policy("local", policy=failing, execute_steps=2) as policy, pytest.raises(aa.ServerError) as caught:
        evaluate(policy, ReachEnv(num_envs=2, **SMALL), 20, report_path=report, figure=False)
    assert "RuntimeError: model crashed" in caught.value.server_message
    data = read_json(report)
    assert data["error"].startswith("ServerError: the local policy raised RuntimeError: model crashed")
    assert data["complete"] is False
    assert not report.with_suffix(".png").exists()


def test_the_figure_is_skipped_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with _policy() as policy:
        result = evaluate(policy, ReachEnv(num_envs=2, **SMALL), 3, report_path=tmp_path / "r.json")
    assert result.figure_path is None and not (tmp_path / "r.png").exists()
    assert "matplotlib is not installed" in read_json(tmp_path / "r.json")["figure"]


def test_exactly_m_even_when_the_policy_is_reused() -> None:
    env = ReachEnv(num_envs=3, **SMALL)
    with _policy() as policy:
        first = evaluate(policy, env, 4)
        second = evaluate(policy, env, 5)
    assert (first.completed, second.completed) == (4, 5)
    assert len(first.latencies_s) + len(second.latencies_s) == len(policy.stats.latencies_s)
    assert second.queries == len(second.latencies_s)


def _snapshot(finished: int, elapsed: float = 1.0) -> EvalProgress:
    return EvalProgress(step=10, finished=finished, successes=finished - 1, num_episodes=10, in_flight=2,
                        queries=20, env_requests=40, elapsed_s=elapsed)


def test_progress_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, label="reach/x", tty=True, refresh_s=0.0)
    display(_snapshot(5))
    display.close()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[2Kreach/x [############------------] 5/10 episodes")
    assert "success  80.0%" in text and "20.0 req/s" in text and text.endswith("\n")


def test_plain_log_lines_elsewhere() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, label="reach/x", tty=False)
    for finished in range(1, 11):
        display(_snapshot(finished, elapsed=finished * 0.1))
    display.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[-1] == "[reach/x] 10/10 episodes, success 90.0%, 20.0 req/s, 10.0 steps/s, 1.0 s"
    assert 2 <= len(lines) <= 11


def test_eval_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "eval.json"
    code = main([
        "eval", "--adapter", "local", "--policy", "arena_adapters.envs.reach_serving:local_expert",
        "--env", "reach", "--num-envs", "3", "--num-episodes", "7", "--seed", "3",
        "--env-option", "image_height=60", "--env-option", "image_width=100", "--env-option", "num_targets=1",
        "--execute-steps", "8", "--report", str(report), "--progress", "log",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "reach local: 7/7 episodes on 3 envs" in captured.out
    assert "[reach/local] 7/7 episodes" in captured.err
    data = read_json(report)
    assert data["completed_episodes"] == 7 and data["env_options"] == {"image_height": "60", "image_width": "100",
                                                                      "num_targets": "1", "seed": 3}
    assert data["adapter_options"]["execute_steps"] == "8"
    assert report.with_suffix(".png").exists()


def test_eval_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--adapter", "local", "--policy", "x:y", "--bogus", "1", "--no-report"]) == 2
    assert "unknown argument(s) ['--bogus', '1']" in capsys.readouterr().err
    assert main(["eval", "--adapter", "local", "--endpoint", "tcp://x", "--no-report"]) == 2
    assert "adapter 'local' takes no endpoint" in capsys.readouterr().err
    assert main(["eval", "--adapter", "local", "--env", "nope", "--policy", "x:y", "--no-report"]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err


def test_masked_out_envs_cost_no_inference() -> None:
    """Envs beyond the budget are paused: the env observations sent are exactly those the counted
    episodes need (one per execute_steps of each), not one per env step of every env."""
    execute_steps = 8
    with aa.load_policy("local", policy=LocalReachExpert(), execute_steps=execute_steps) as policy:
        result = evaluate(policy, ReachEnv(num_envs=6, **SMALL), 7)
    needed = sum(-(-episode.length // execute_steps) for episode in result.episodes)
    assert len(result.episodes) == 7
    assert result.env_requests == needed
