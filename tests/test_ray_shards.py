"""Bookkeeping of sharded runs without Ray: assignment of episode ids, the collector's ledger, the
merged report."""

from __future__ import annotations

import json
import sys

import pytest

from arena_adapters.cli import main
from arena_adapters.errors import ConfigError
from arena_adapters.integrations.ray_eval import ShardedEvalConfig, evaluate_on_ray
from arena_adapters.integrations.ray_result import ShardedResult
from arena_adapters.integrations.ray_shards import EpisodeCollector, assign_shards


def test_shards_own_contiguous_blocks_and_replicas_round_robin() -> None:
    shards = assign_shards(10, 4, ["a", "b", "c"])
    assert [s.episode_ids for s in shards] == [(0, 1, 2), (3, 4, 5), (6, 7), (8, 9)]
    assert [s.endpoint for s in shards] == ["a", "b", "c", "a"]
    assert [s.endpoint for s in assign_shards(2, 2)] == [None, None]
    with pytest.raises(ConfigError, match="3 shards for 2 episodes"):
        assign_shards(2, 3)
    with pytest.raises(ConfigError, match="shards: expected >= 1, got 0"):
        assign_shards(2, 0)


def test_a_retry_runs_only_missing_ids_and_a_late_duplicate_is_dropped() -> None:
    collector = EpisodeCollector({0: [0, 1, 2, 3, 4], 1: [5, 6]}, {0: "a", 1: "b"})
    attempt, ids = collector.begin(0, num_envs=2)
    assert (attempt, ids) == (0, [0, 1, 2, 3, 4])
    collector.record(0, 0, [(1, 1, 4, True, 4)], started=3, latencies_s=[0.01, 0.02], queries=2, steps=4, env_steps=8)
    # the actor dies with episodes 0 and 2 running; the retry gets what is missing
    attempt, ids = collector.begin(0, num_envs=2)
    assert (attempt, ids) == (1, [0, 2, 3, 4])
    collector.record(0, 1, [(0, 0, 3, True, 3), (2, 1, 5, False, 5), (3, 0, 2, True, 5)], started=4,
                     latencies_s=[0.03], queries=1, steps=5, env_steps=10)
    collector.record(0, 0, [(0, 0, 9, False, 9)], started=3)  # a late report of the dead attempt
    collector.record(0, 1, [(4, 1, 1, True, 6)], started=4, steps=1, env_steps=2)
    snapshot = collector.snapshot()
    assert [e["index"] for e in snapshot["episodes"]] == [0, 1, 2, 3, 4]
    assert snapshot["episodes"][0]["length"] == 3 and snapshot["episodes"][0]["attempt"] == 1  # first result won
    assert snapshot["duplicates"] == 1
    assert snapshot["reruns"] == [0, 2]  # started by attempt 0, finished by attempt 1; 3 and 4 had not started
    shard = snapshot["shards"][0]
    assert shard["attempts"] == 2 and shard["retried_episodes"] == 4 and shard["finished"] == 5
    assert shard["steps"] == 10 and shard["env_steps"] == 20 and shard["queries"] == 3
    assert collector.progress()["per_shard_finished"] == [5, 0]
    with pytest.raises(ConfigError, match="shard 1 reported episode 0, which it does not own"):
        collector.begin(1, 1)
        collector.record(1, 0, [(0, 0, 1, True, 1)], started=1)

    result = ShardedResult.from_snapshot(snapshot, num_envs=2, num_episodes=7, num_shards=2, wall_time_s=2.0,
                                         info={"adapter": "gr00t"})
    report = json.loads(json.dumps(result.to_dict()))
    assert report["completed_episodes"] == 5 and report["complete"] is False
    assert report["sharding"]["reruns"] == [0, 2] and report["latency_ms"]["count"] == 3
    assert report["steps"] == {"count": 10, "per_s": 5.0, "env_steps": 20, "env_steps_per_s": 10.0}
    assert [e["attempt"] for e in report["episodes"]] == [1, 0, 1, 1, 1]
    assert "re-run" in result.summary() and "2 shards x 2 envs" in result.summary()


@pytest.mark.parametrize("arguments, message", [
    (["--shards", "2"], "--shards needs --ray"),
    (["--ray", "--serve-replicas", "2", "--endpoint", "tcp://127.0.0.1:1"], "give it or --endpoint, not both"),
    (["--ray", "--device", "cuda", "--gpus-per-shard", "0"], "--device cuda needs --gpus-per-shard > 0"),
    (["--ray", "--shards", "0"], "--shards: expected >= 1, got 0"),
    (["--ray", "--replica", "1", "--endpoint", "tcp://127.0.0.1:1"], "--replica is for torchrun ranks"),
])
def test_eval_ray_flags_are_checked_before_ray_starts(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--adapter", "gr00t", "--no-report", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_bad_sizes_and_choices_fail_before_ray_starts() -> None:
    config = ShardedEvalConfig("gr00t")
    with pytest.raises(ConfigError, match="3 shards for 2 episodes"):
        evaluate_on_ray(config, 2, num_shards=3)
    with pytest.raises(ConfigError, match="on_shard_error: expected one of retry, stop, got 'ignore'"):
        evaluate_on_ray(config, 2, on_shard_error="ignore")
    with pytest.raises(ConfigError, match="give endpoints or serve_replicas, not both"):
        evaluate_on_ray(config, 2, endpoints="tcp://127.0.0.1:1", serve_replicas=1)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
