"""The shared action scheduler against a plain per-env reference written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.scheduler import STRATEGIES, ActionChunkScheduler

ACTION_DIM = 3


class ReferenceScheduler:
    """One Python object per env, one env at a time: the obvious semantics."""

    def __init__(self, num_envs: int, execute_steps: int | None, strategy: str, decay: float) -> None:
        self.num_envs, self.k, self.strategy, self.decay = num_envs, execute_steps, strategy, decay
        if strategy == "ensemble" and execute_steps is None:
            self.k = 1
        self.t = 0
        self.chunk: list[np.ndarray | None] = [None] * num_envs
        self.loaded_at = [0] * num_envs
        self.predictions: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(num_envs)]

    def _steps(self, env: int) -> int:
        chunk = self.chunk[env]
        assert chunk is not None
        return len(chunk) if self.k is None else min(self.k, len(chunk))

    def due(self) -> list[int]:
        due = [e for e in range(self.num_envs) if self.chunk[e] is None or self.t - self.loaded_at[e] >= self._steps(e)]
        if self.strategy == "lockstep" and due:
            return list(range(self.num_envs))
        return due

    def load(self, env_ids: list[int], chunk: np.ndarray) -> None:
        for row, env in enumerate(env_ids):
            self.chunk[env] = chunk[row]
            self.loaded_at[env] = self.t
            self.predictions[env].append((self.t, chunk[row]))

    def step(self) -> np.ndarray:
        out = np.zeros((self.num_envs, ACTION_DIM))
        for env in range(self.num_envs):
            if self.strategy == "ensemble":
                live = [(s, c[self.t - s]) for s, c in self.predictions[env] if s <= self.t < s + len(c)]
                oldest = live[0][0]
                weights = np.array([math.exp(-self.decay * (s - oldest)) for s, _ in live])
                out[env] = (weights[:, None] * np.stack([a for _, a in live])).sum(0) / weights.sum()
            else:
                chunk = self.chunk[env]
                assert chunk is not None
                out[env] = chunk[self.t - self.loaded_at[env]]
        self.t += 1
        return out

    def reset(self, env_ids: list[int]) -> None:
        for env in env_ids:
            self.chunk[env] = None
            self.predictions[env] = []


@settings(max_examples=150, deadline=None)
@given(
    num_envs=st.integers(1, 9),
    execute_steps=st.one_of(st.none(), st.integers(1, 6)),
    strategy=st.sampled_from(STRATEGIES),
    decay=st.sampled_from([0.0, 0.01, 0.5, -0.2]),
    steps=st.integers(1, 50),
    reset_probability=st.sampled_from([0.0, 0.05, 0.3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(
    num_envs: int,
    execute_steps: int | None,
    strategy: str,
    decay: float,
    steps: int,
    reset_probability: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    scheduler = ActionChunkScheduler(
        num_envs, "cpu", execute_steps=execute_steps, strategy=strategy, ensemble_decay=decay, dtype=torch.float64
    )
    reference = ReferenceScheduler(num_envs, execute_steps, strategy, decay)
    for _ in range(steps):
        due = scheduler.due_envs()
        assert due.tolist() == reference.due()
        if len(due):
            horizon = int(rng.integers(1, 9))
            chunk = rng.normal(size=(len(due), horizon, ACTION_DIM))
            scheduler.load(due, torch.from_numpy(chunk))
            reference.load(due.tolist(), chunk)
        actions = scheduler.step()
        assert actions.shape == (num_envs, ACTION_DIM)
        np.testing.assert_allclose(actions.numpy(), reference.step(), rtol=1e-9, atol=1e-9)
        resets = np.flatnonzero(rng.random(num_envs) < reset_probability)
        scheduler.reset(resets)
        reference.reset(resets.tolist())


def _episode_lengths(rng: np.random.Generator, num_envs: int, total_steps: int) -> list[list[int]]:
    lengths = []
    for _ in range(num_envs):
        env_lengths, used = [], 0
        while used < total_steps:
            length = int(rng.integers(5, 120))
            env_lengths.append(min(length, total_steps - used))
            used += length
        lengths.append(env_lengths)
    return lengths


@pytest.mark.parametrize("execute_steps", [1, 3, 8, 16])
def test_fetch_accounting_out_of_phase(execute_steps: int) -> None:
    """Each env is queried exactly once per execute_steps actions of every episode; replay steps query nobody."""
    num_envs, total_steps, horizon = 64, 1000, 16
    rng = np.random.default_rng(execute_steps)
    lengths = _episode_lengths(rng, num_envs, total_steps)
    episode_end = {(e, sum(lengths[e][: i + 1])) for e in range(num_envs) for i in range(len(lengths[e]))}
    scheduler = ActionChunkScheduler(num_envs, "cpu", execute_steps=execute_steps)
    episode_start = np.zeros(num_envs, dtype=np.int64)
    replay_steps = 0
    for t in range(total_steps):
        due = scheduler.due_envs()
        # an env is due exactly at the start of an episode or after each execute_steps of it
        expected = np.flatnonzero((t - episode_start) % min(execute_steps, horizon) == 0)
        assert due.tolist() == expected.tolist()
        if len(due):
            scheduler.load(due, torch.zeros(len(due), horizon, 2))
        else:
            replay_steps += 1
        scheduler.step()
        finished = [e for e in range(num_envs) if (e, t + 1) in episode_end]
        scheduler.reset(np.array(finished, dtype=np.int64))
        episode_start[finished] = t + 1
    ideal = [sum(math.ceil(n / min(execute_steps, horizon)) for n in lengths[e]) for e in range(num_envs)]
    assert scheduler.requests_per_env.tolist() == ideal
    assert scheduler.load_calls == total_steps - replay_steps
    if execute_steps > 1:
        assert replay_steps > 0


def test_lockstep_queries_everyone_when_anyone_is_due() -> None:
    scheduler = ActionChunkScheduler(4, "cpu", execute_steps=4, strategy="lockstep")
    scheduler.load(scheduler.due_envs(), torch.zeros(4, 8, 2))
    scheduler.step()
    scheduler.reset(np.array([2]))
    assert scheduler.due_envs().tolist() == [0, 1, 2, 3]


def test_short_chunk_is_executed_fully_then_requeried() -> None:
    scheduler = ActionChunkScheduler(2, "cpu", execute_steps=5)
    scheduler.load(np.array([0, 1]), torch.arange(6.0).view(2, 3, 1))
    taken = [scheduler.step()[:, 0].tolist() for _ in range(3)]
    assert taken == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    assert scheduler.due_envs().tolist() == [0, 1]


def test_longer_chunk_grows_the_buffer_and_keeps_running_chunks() -> None:
    scheduler = ActionChunkScheduler(2, "cpu")
    scheduler.load(np.array([0, 1]), torch.arange(4.0).view(2, 2, 1))
    assert scheduler.step()[:, 0].tolist() == [0.0, 2.0]
    scheduler.reset(np.array([0]))
    scheduler.load(np.array([0]), torch.arange(10.0, 15.0).view(1, 5, 1))
    assert scheduler.horizon == 5
    assert scheduler.step()[:, 0].tolist() == [10.0, 3.0]


def test_errors_are_explicit() -> None:
    scheduler = ActionChunkScheduler(3, "cpu", action_dim=8)
    with pytest.raises(ActionError, match=r"have no action left"):
        scheduler.step()
    with pytest.raises(ActionError, match=r"expected action dimension 8, got shape \(3, 4, 7\)"):
        scheduler.load(np.arange(3), torch.zeros(3, 4, 7))
    with pytest.raises(ActionError, match=r"expected 3 rows"):
        scheduler.load(np.arange(3), torch.zeros(2, 4, 8))
    with pytest.raises(ActionError, match=r"empty horizon"):
        scheduler.load(np.arange(3), torch.zeros(3, 0, 8))
    with pytest.raises(ActionError, match=r"expected shape"):
        scheduler.load(np.arange(3), torch.zeros(3, 8))
    with pytest.raises(ConfigError, match=r"env ids must be in \[0, 3\), got \[5\]"):
        scheduler.reset(np.array([5]))
    with pytest.raises(ConfigError, match=r"strategy"):
        ActionChunkScheduler(3, strategy="sometimes")
    with pytest.raises(ConfigError, match=r"execute_steps"):
        ActionChunkScheduler(3, execute_steps=0)


def test_ensemble_decay_bound_is_enforced() -> None:
    scheduler = ActionChunkScheduler(1, "cpu", strategy="ensemble", ensemble_decay=10.0)
    with pytest.raises(ConfigError, match="ensemble_decay"):
        scheduler.load(np.array([0]), torch.zeros(1, 16, 2))


def test_act_weights_when_querying_every_step() -> None:
    """With a query every step, the i-th oldest prediction weighs exp(-m*i), as in ACT."""
    decay = 0.3
    scheduler = ActionChunkScheduler(1, "cpu", strategy="ensemble", ensemble_decay=decay, dtype=torch.float64)
    values = [1.0, 5.0, 11.0]
    for value in values:
        scheduler.load(scheduler.due_envs(), torch.full((1, 4, 1), value, dtype=torch.float64))
        action = scheduler.step()
    weights = np.exp(-decay * np.arange(3))
    assert action.item() == pytest.approx(float((weights * values).sum() / weights.sum()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replay_steps_do_not_synchronise_on_cuda() -> None:
    scheduler = ActionChunkScheduler(256, "cuda", execute_steps=8)
    scheduler.load(scheduler.due_envs(), torch.randn(256, 16, 8, device="cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(7):
            assert len(scheduler.due_envs()) == 0
            actions = scheduler.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert actions.device.type == "cuda"
