"""Exact episode accounting: exactly M episodes, counted in start order, for any N and M."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arena_adapters as aa
from arena_adapters.envs.reach import ReachEnv
from arena_adapters.envs.reach_serving import LocalReachExpert
from arena_adapters.evaluation import EpisodeLedger, evaluate


def _simulate(num_envs: int, num_episodes: int, lengths: list[int]) -> tuple[EpisodeLedger, list[tuple[int, int]]]:
    """Drive a ledger with envs whose k-th episode (over all envs) lasts ``lengths[k % len]`` steps."""
    ledger = EpisodeLedger(num_envs, num_episodes)
    started: list[tuple[int, int]] = []  # (env_id, start step) of every episode any env started
    remaining = np.zeros(num_envs, dtype=np.int64)
    count = 0
    for env_id in range(num_envs):
        remaining[env_id] = lengths[count % len(lengths)]
        started.append((env_id, 0))
        count += 1
    for step in range(1, 10_000):
        if ledger.done:
            break
        remaining -= 1
        finished = remaining == 0
        success = (np.arange(num_envs) + step) % 3 == 0
        ledger.record_step(finished, success)
        for env_id in np.flatnonzero(finished):
            remaining[env_id] = lengths[count % len(lengths)]
            started.append((int(env_id), step))
            count += 1
    return ledger, started


@settings(max_examples=150, deadline=None)
@given(
    num_envs=st.integers(1, 12),
    num_episodes=st.integers(1, 40),
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=7),
)
def test_exactly_m_episodes_counted_in_start_order(num_envs: int, num_episodes: int, lengths: list[int]) -> None:
    ledger, started = _simulate(num_envs, num_episodes, lengths)
    assert ledger.done and ledger.finished == num_episodes
    assert ledger.in_flight == 0
    assert sorted(e.index for e in ledger.episodes) == list(range(num_episodes))
    # the counted episodes are the first num_episodes to start (ties in env-id order)
    order = sorted(started, key=lambda item: (item[1], item[0]))[:num_episodes]
    by_index = sorted(ledger.episodes, key=lambda e: e.index)
    assert [(e.env_id, e.end_step - e.length) for e in by_index] == order


def test_an_env_that_would_start_past_m_is_masked_out() -> None:
    ledger = EpisodeLedger(num_envs=4, num_episodes=5)
    assert ledger.active.tolist() == [True] * 4
    restarted = ledger.record_step(np.array([True, True, False, False]), np.array([True, False, False, False]))
    assert restarted.tolist() == [0]  # episode 5 goes to env 0; env 1 is masked out
    assert ledger.active.tolist() == [True, False, True, True]
    ledger.record_step(np.array([False, True, False, False]), np.zeros(4, bool))  # a masked env: not counted
    assert ledger.finished == 2
    for _ in range(3):
        ledger.record_step(np.array([True, False, True, True]), np.ones(4, bool))
    assert ledger.done and ledger.finished == 5 and ledger.successes == 4
    assert ledger.in_flight == 0


def test_fewer_episodes_than_envs() -> None:
    ledger = EpisodeLedger(num_envs=8, num_episodes=3)
    assert ledger.active.tolist() == [True] * 3 + [False] * 5
    ledger.record_step(np.ones(8, bool), np.ones(8, bool))
    assert ledger.done and [e.env_id for e in ledger.episodes] == [0, 1, 2]


@pytest.mark.parametrize(("num_envs", "num_episodes"), [(16, 37), (5, 13), (6, 4)])
def test_evaluate_counts_exactly_m_for_m_not_divisible_by_n(num_envs: int, num_episodes: int) -> None:
    env = ReachEnv(num_envs=num_envs, seed=7, image_height=60, image_width=100, num_targets=1)
    with aa.load_policy("local", policy=LocalReachExpert(), execute_steps=8) as policy:
        result = evaluate(policy, env, num_episodes)
    assert result.completed == num_episodes and result.complete
    assert sorted(e.index for e in result.episodes) == list(range(num_episodes))
    assert result.success_rate > 0.9
    assert result.steps == max(e.end_step for e in result.episodes)
    assert result.queries == len(result.latencies_s) > 0
