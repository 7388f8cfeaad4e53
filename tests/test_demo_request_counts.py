"""Requests sent vs the ideal and an Arena-style client, counted from a run's episode pattern."""

from __future__ import annotations

from arena_adapters.evaluation.episodes import Episode
from arena_adapters.evaluation.request_counts import (
    RequestCount,
    arena_style_requests,
    compare_requests,
    episode_pattern,
    ideal_requests,
)

# env 0 runs episodes of 6 then 5 steps (steps 0-5, 6-10), env 1 one of 11 (steps 0-10)
EPISODES = [Episode(0, 0, 6, True, 6), Episode(1, 1, 11, True, 11), Episode(2, 0, 5, False, 11)]


def test_the_episode_pattern_is_rebuilt_from_the_counted_episodes() -> None:
    starts, running = episode_pattern(EPISODES, num_envs=3)
    assert starts.shape == (11, 3)
    assert starts[:, 0].nonzero()[0].tolist() == [0, 6] and starts[:, 1].nonzero()[0].tolist() == [0]
    assert running[:, 0].all() and running[:, 1].all() and not running[:, 2].any()  # env 2 never counted


def test_ideal_asks_when_an_env_starts_or_has_used_its_chunk() -> None:
    # chunks of 4: env 0 asks at steps 0, 4 | 6, 10; env 1 at 0, 4, 8 -> 7 observations over steps {0,4,6,8,10}
    assert ideal_requests(EPISODES, 3, chunk_steps=4) == RequestCount(queries=5, env_observations=7)


def test_arena_style_requeries_every_running_env_whenever_one_needs_a_chunk() -> None:
    # step 0: both; step 4: both used up; step 6: env 0 restarts -> both; step 10: both used up again
    assert arena_style_requests(EPISODES, 3, chunk_steps=4) == RequestCount(queries=4, env_observations=8)


def test_comparison_report_and_summary() -> None:
    comparison = compare_requests(EPISODES, 3, 4, sent=RequestCount(5, 7))
    data = comparison.to_dict()
    assert data["sent"] == data["ideal"] == {"queries": 5, "env_observations": 7}
    assert data["arena_style"] == {"queries": 4, "env_observations": 8} and data["chunk_steps"] == 4
    line = comparison.summary()
    assert "sent 5 (7 env obs), ideal 5 (7), Arena-style 4 (8)" in line and "Arena-style/sent 1.14x" in line
