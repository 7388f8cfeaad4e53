"""torchrun ranks: each rank's device, replica and share of the episodes; two real ``eval`` ranks
launched by torchrun against two real GR00T reference servers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import arena_adapters as aa
from arena_adapters.distributed import RankInfo, episode_share, rank_defaults, rank_path
from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.server_process import ServerProcess

REPLICAS = "tcp://10.0.0.1:5555, tcp://10.0.0.2:5555,tcp://10.0.0.3:5555"
TORCHRUN = {"RANK": "4", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}


def _cuda(available: bool):  # type: ignore[no-untyped-def]
    return lambda: available


def test_rank_defaults_pick_the_local_gpu_and_the_rank_s_replica() -> None:
    options = rank_defaults({"endpoint": REPLICAS, "execute_steps": 8}, TORCHRUN, cuda_available=_cuda(True))
    assert options == {"endpoint": "tcp://10.0.0.2:5555", "execute_steps": 8, "device": "cuda:1"}  # 4 mod 3 = 1


def test_rank_defaults_keep_cpu_and_an_explicit_device_and_change_nothing_outside_a_launcher() -> None:
    assert rank_defaults({"endpoint": REPLICAS}, TORCHRUN, cuda_available=_cuda(False)) == {
        "endpoint": "tcp://10.0.0.2:5555"}
    assert rank_defaults({"device": "cpu"}, TORCHRUN, cuda_available=_cuda(True)) == {"device": "cpu"}
    assert rank_defaults({"endpoint": REPLICAS}, {}, cuda_available=_cuda(True)) == {"endpoint": REPLICAS}
    assert rank_defaults({"endpoint": ["a", "b"]}, {"RANK": "3"}, cuda_available=_cuda(False)) == {"endpoint": "b"}


def test_the_replica_option_overrides_the_rank_choice() -> None:
    assert rank_defaults({"endpoint": REPLICAS, "replica": "0"}, TORCHRUN, cuda_available=_cuda(False)) == {
        "endpoint": "tcp://10.0.0.1:5555"}
    assert rank_defaults({"endpoint": REPLICAS, "replica": 5}, {}, cuda_available=_cuda(False)) == {
        "endpoint": "tcp://10.0.0.3:5555"}
    assert rank_defaults({"endpoint": REPLICAS, "replica": "all"}, TORCHRUN, cuda_available=_cuda(False)) == {
        "endpoint": REPLICAS}
    with pytest.raises(ConfigError, match=r"option 'replica': expected 'rank', 'all' or a replica index >= 0, got 'first'"):
        rank_defaults({"endpoint": REPLICAS, "replica": "first"}, {})
    with pytest.raises(ConfigError, match=r"option 'replica': given \(1\) but no 'endpoint'"):
        rank_defaults({"replica": 1}, {})


def test_bad_rank_variables_are_named() -> None:
    with pytest.raises(ConfigError, match=r"environment variable LOCAL_RANK: expected a non-negative integer, got 'x'"):
        RankInfo.from_environ({"LOCAL_RANK": "x"})
    with pytest.raises(ConfigError, match=r"RANK=2 WORLD_SIZE=2"):
        RankInfo.from_environ({"RANK": "2", "WORLD_SIZE": "2"})
    assert RankInfo.from_environ({"LOCAL_RANK": "3"}) == RankInfo(rank=3, local_rank=3, world_size=4)


def test_load_policy_applies_the_rank_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with aa.load_policy("gr00t", endpoint="tcp://127.0.0.1:1,tcp://127.0.0.1:2", device="cpu") as policy:
        assert [replica.endpoint for replica in policy.stats.replicas] == ["tcp://127.0.0.1:2"]
    with pytest.raises(ConfigError, match="option 'replica'"):
        aa.load_policy("gr00t", endpoint="tcp://127.0.0.1:1", replica="-1")


@pytest.mark.parametrize("num_episodes, world_size", [(7, 2), (10, 4), (3, 5), (1, 1)])
def test_episode_shares_cover_every_id_once(num_episodes: int, world_size: int) -> None:
    ids = []
    for rank in range(world_size):
        first, count = episode_share(num_episodes, RankInfo(rank, rank, world_size))
        ids += range(first, first + count)
    assert ids == list(range(num_episodes))
    assert rank_path("out/run.json", RankInfo(3, 1, 4)) == "out/run.rank3.json"


@pytest.fixture(scope="module")
def gr00t_replicas() -> Iterator[list[str]]:
    servers = [ServerProcess.for_expert("gr00t") for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            endpoints = list(pool.map(ServerProcess.start, servers))
        yield endpoints
    finally:
        for server in servers:
            server.stop()


@pytest.mark.timeout(300)
def test_torchrun_two_eval_ranks_split_the_episodes_over_two_replicas(
    gr00t_replicas: list[str], tmp_path: Path
) -> None:
    report = tmp_path / "run.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "arena_adapters", "eval", "--adapter", "gr00t", "--endpoint", ",".join(gr00t_replicas),
               "--num-envs", "2", "--num-episodes", "7", "--execute-steps", "8", "--env-option", "image_height=60",
               "--env-option", "image_width=100", "--env-option", "num_targets=1", "--report", str(report),
               "--no-figure", "--progress", "none",
               "--threads", "1"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=280)
    assert completed.returncode == 0, completed.stderr[-3000:]
    reports = [json.loads((tmp_path / f"run.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert not report.exists()
    assert [r["endpoint"] for r in reports] == gr00t_replicas  # rank r -> replica r mod 2
    assert [r["rank"]["rank"] for r in reports] == [0, 1] and all(r["rank"]["world_size"] == 2 for r in reports)
    assert [r["num_episodes"] for r in reports] == [4, 3] and all(r["complete"] for r in reports)
    assert [e["index"] for e in reports[0]["episodes"]] == [0, 1, 2, 3]
    assert [e["index"] for e in reports[1]["episodes"]] == [4, 5, 6]
    assert [r["env_options"]["seed"] for r in reports] == [0, 1] and [r["device"] for r in reports] == ["cpu"] * 2
    assert all(r["policy_stats"]["queries"] == r["requests"]["count"] > 0 for r in reports)
    assert [[replica["endpoint"] for replica in r["policy_stats"]["replicas"]] for r in reports] == [
        [endpoint] for endpoint in gr00t_replicas]
