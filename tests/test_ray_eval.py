"""Sharded evaluation on a real local Ray instance (2 CPUs) against real GR00T reference servers.

One module-scoped Ray instance for all tests here (marker ``ray``), so its start-up cost is paid once
and never by other tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from arena_adapters.cli import main
from arena_adapters.evaluation.server_process import ServerProcess
from arena_adapters.integrations.ray_eval import (
    ShardedEvalConfig,
    ShardedProgress,
    ShardError,
    evaluate_on_ray,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

SMALL = {"image_height": 60, "image_width": 100, "num_targets": 1}  # one moving target: short episodes
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A local Ray instance with 2 CPUs, bound to 127.0.0.1 (Ray reads that setting when it is first
    imported, so this fixture imports it)."""
    before = os.environ.get(LOOPBACK_ONLY)
    os.environ[LOOPBACK_ONLY] = "0"  # Ray's own switch: its processes on 127.0.0.1 only
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if before is None:
        del os.environ[LOOPBACK_ONLY]
    else:
        os.environ[LOOPBACK_ONLY] = before


@pytest.fixture(scope="module")
def gr00t_replicas() -> Iterator[list[str]]:
    servers = [ServerProcess.for_expert("gr00t") for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:  # both start at once
            endpoints = list(pool.map(ServerProcess.start, servers))
        yield endpoints
    finally:
        for server in servers:
            server.stop()


def _config(**options: Any) -> ShardedEvalConfig:
    return ShardedEvalConfig("gr00t", adapter_options={"execute_steps": 8, **options}, num_envs=4, env_options=SMALL)


def test_cli_two_shards_two_served_replicas_one_report_of_exactly_m_episodes(
    local_ray: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "sharded.json"
    code = main(["eval", "--adapter", "gr00t", "--ray", "--shards", "2", "--serve-replicas", "2",
                 "--num-envs", "4", "--num-episodes", "14", "--env-option", "image_height=60",
                 "--env-option", "image_width=100", "--env-option", "num_targets=1", "--execute-steps", "8",
                 "--report", str(report),
                 "--progress", "log"])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(report.read_text())
    assert data["num_episodes"] == data["completed_episodes"] == 14 and data["complete"] is True
    assert [episode["index"] for episode in data["episodes"]] == list(range(14))
    assert [episode["shard"] for episode in data["episodes"]] == [0] * 7 + [1] * 7
    assert data["success_rate"] > 0.9
    sharding = data["sharding"]
    assert sharding["num_shards"] == 2 and sharding["reruns"] == [] and sharding["duplicates_dropped"] == 0
    shards = sharding["shards"]
    endpoints = [shard["endpoint"] for shard in shards]
    assert len(set(endpoints)) == 2 and all(endpoint.startswith("tcp://127.0.0.1:") for endpoint in endpoints)
    assert data["endpoint"] == ",".join(endpoints) and data["ray"]["served_replicas"] == 2
    assert [shard["finished"] for shard in shards] == [7, 7] and all(shard["attempts"] == 1 for shard in shards)
    assert all(shard["episodes_per_s"] > 0 and shard["env_steps_per_s"] > 0 for shard in shards)
    # latency percentiles over every request of both shards
    assert data["latency_ms"]["count"] == len(data["latencies_ms"]) == data["requests"]["count"]
    assert data["requests"]["count"] == sum(shard["queries"] for shard in shards) > 0
    replicas = sharding["replicas"]  # the policies' per-replica counters, summed by endpoint
    assert {e: r["requests"] for e, r in replicas.items()} == {s["endpoint"]: s["queries"] for s in shards}
    assert all(r["failures"] == 0 for r in replicas.values())
    assert [shard["reports"]["0"]["node"] for shard in shards] == ["127.0.0.1"] * 2  # Ray on loopback only
    stats = [shard["reports"]["0"]["policy_stats"] for shard in shards]
    assert [s["queries"] for s in stats] == [shard["queries"] for shard in shards]
    assert data["steps"]["env_steps"] == 4 * data["steps"]["count"] == sum(s["env_steps"] for s in shards)
    assert "14/14 episodes" in out.err and "shard 1" in out.out and "2 shards x 4 envs" in out.out


def test_a_killed_shard_actor_is_restarted_and_only_its_unfinished_episodes_rerun(
    local_ray: Any, gr00t_replicas: list[str], tmp_path: Path
) -> None:
    num_episodes = 48
    killed_at: list[int] = []

    def kill_shard_zero_once(progress: ShardedProgress) -> None:
        if not killed_at and progress.per_shard_finished[0] >= 3:
            killed_at.append(progress.per_shard_finished[0])
            local_ray.kill(local_ray.get_actor(progress.actor_names[0]), no_restart=False)

    result = evaluate_on_ray(_config(), num_episodes, endpoints=gr00t_replicas, num_shards=2,
                             callbacks=[kill_shard_zero_once], report_path=tmp_path / "r.json", figure=False)
    assert killed_at and killed_at[0] < num_episodes // 2, "shard 0 must be killed mid-run"
    assert result.complete and result.completed == num_episodes and result.error is None
    assert sorted(episode.index for episode in result.episodes) == list(range(num_episodes))
    shard_zero, shard_one = result.shards
    assert shard_zero["attempts"] == 2 and shard_one["attempts"] == 1
    assert shard_zero["endpoint"] == gr00t_replicas[0] and shard_one["endpoint"] == gr00t_replicas[1]
    # the episodes the dead attempt had started but not reported were run again by the restarted actor
    assert result.reruns and set(result.reruns) <= set(range(num_episodes // 2))
    assert all(result.episode_origin[episode] == (0, 1) for episode in result.reruns)
    finished_first = [e for e, (shard, attempt) in result.episode_origin.items() if (shard, attempt) == (0, 0)]
    assert len(finished_first) >= killed_at[0] and not set(finished_first) & set(result.reruns)
    assert shard_zero["retried_episodes"] == num_episodes // 2 - len(finished_first)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["completed_episodes"] == num_episodes and data["sharding"]["reruns"] == result.reruns
    assert {e["attempt"] for e in data["episodes"] if e["shard"] == 0} == {0, 1}


def test_stop_on_shard_error_raises_and_writes_the_partial_report(local_ray: Any, tmp_path: Path) -> None:
    dead = "tcp://127.0.0.1:9"  # nothing listens: the shard's first request times out
    report = tmp_path / "stopped.json"
    with pytest.raises(ShardError, match=r"shard 0 failed: TransportTimeout"):
        evaluate_on_ray(_config(timeout=0.5), 8, endpoints=dead, num_shards=1, on_shard_error="stop",
                        report_path=report, figure=False)
    data = json.loads(report.read_text())
    assert data["complete"] is False and data["completed_episodes"] == 0
    assert data["error"].startswith("shard 0 failed: TransportTimeout") and data["endpoint"] == dead
