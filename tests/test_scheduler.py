"""The shared action scheduler against a plain per-env reference written here."""

from __future__ import annotations

import math
from concurrent.futures import Future

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.scheduler import AGGREGATES, STRATEGIES, ActionChunkScheduler

ACTION_DIM = 3


class ReferenceScheduler:
    """One Python object per env, one env at a time: the obvious semantics."""

    def __init__(
        self, num_envs: int, execute_steps: int | None, strategy: str, decay: float,
        aggregate: str = "replace", weight: float = 0.5, rate: float = 0.5,
    ) -> None:
        self.num_envs, self.k, self.strategy, self.decay = num_envs, execute_steps, strategy, decay
        self.aggregate, self.weight, self.rate = aggregate, weight, rate
        self.plan: list[dict[int, np.ndarray]] = [{} for _ in range(num_envs)]  # step -> action
        if strategy == "ensemble" and execute_steps is None:
            self.k = 1
        self.t = 0
        self.chunk: list[np.ndarray | None] = [None] * num_envs
        self.loaded_at = [0] * num_envs
        self.predictions: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(num_envs)]
        self.paused = [False] * num_envs
        self.last = np.zeros((num_envs, ACTION_DIM))

    def _steps(self, env: int) -> int:
        chunk = self.chunk[env]
        assert chunk is not None
        return len(chunk) if self.k is None else min(self.k, len(chunk))

    def due(self) -> list[int]:
        due = [
            e
            for e in range(self.num_envs)
            if not self.paused[e] and (self.chunk[e] is None or self.t - self.loaded_at[e] >= self._steps(e))
        ]
        if self.strategy == "lockstep" and due:
            return [e for e in range(self.num_envs) if not self.paused[e]]
        return due

    def new_weight(self, i: int, overlap: int) -> float:
        if self.aggregate == "average":
            return self.weight
        if self.aggregate == "linear":
            return (i + 1) / (overlap + 1)
        if self.aggregate == "exponential":
            return 1.0 - math.exp(-self.rate * (i + 1))
        return 1.0

    def load(self, env_ids: list[int], chunk: np.ndarray) -> None:
        for row, env in enumerate(env_ids):
            old = self.plan[env]
            overlap = sum(1 for i in range(len(chunk[row])) if self.t + i in old)
            plan = {}
            for i, action in enumerate(chunk[row]):
                if self.t + i in old:
                    w = self.new_weight(i, overlap)
                    action = w * action + (1 - w) * old[self.t + i]
                plan[self.t + i] = action
            self.plan[env] = plan
            self.chunk[env] = np.stack([plan[self.t + i] for i in range(len(chunk[row]))])
            self.loaded_at[env] = self.t
            self.predictions[env].append((self.t, chunk[row]))

    def step(self) -> np.ndarray:
        out = np.zeros((self.num_envs, ACTION_DIM))
        for env in range(self.num_envs):
            if self.paused[env]:
                out[env] = self.last[env]
            elif self.strategy == "ensemble":
                live = [(s, c[self.t - s]) for s, c in self.predictions[env] if s <= self.t < s + len(c)]
                oldest = live[0][0]
                weights = np.array([math.exp(-self.decay * (s - oldest)) for s, _ in live])
                out[env] = (weights[:, None] * np.stack([a for _, a in live])).sum(0) / weights.sum()
            else:
                chunk = self.chunk[env]
                assert chunk is not None
                out[env] = chunk[self.t - self.loaded_at[env]]
        self.t += 1
        self.last = out
        return out

    def reset(self, env_ids: list[int]) -> None:
        for env in env_ids:
            self.chunk[env] = None
            self.plan[env] = {}
            self.predictions[env] = []
            self.paused[env] = False

    def pause(self, env_ids: list[int]) -> None:
        for env in env_ids:
            self.paused[env] = True



class PrefetchReference(ReferenceScheduler):
    """:class:`ReferenceScheduler` (``replay``) plus requests ahead of time, one env at a time, as the
    module docstring of ``arena_adapters.scheduler`` states them: an env with ``0 < r <= m``
    actions left is asked ahead with the observation of that step (together with the envs due
    now, if any); when a request goes out, envs with ``r <= m + w`` join it; the chunk takes over
    when the old one runs out, its first ``r`` actions skipped, merged with the old plan as
    ``aggregate`` says; asked ahead at most once per chunk, one step after its last request at
    the earliest; a reset or a pause drops the chunk in flight. A request ahead that failed
    raises when its chunk is needed, and its envs (only they) are due again at once."""

    def __init__(
        self, num_envs: int, execute_steps: int | None, aggregate: str, weight: float, rate: float,
        prefetch_steps: int, prefetch_window: int,
    ) -> None:
        super().__init__(num_envs, execute_steps, "replay", 0.0, aggregate, weight, rate)
        self.m, self.w = prefetch_steps, prefetch_window
        self.in_flight: list[tuple[int, np.ndarray | None] | None] = [None] * num_envs  # (step asked, row or failed)
        self.asked = [-1] * num_envs  # step of the last request
        self.requests_per_env = [0] * num_envs

    def left(self, env: int) -> int:
        """Actions left before the env is due (0: due now)."""
        if self.chunk[env] is None:
            return 0
        return max(self.loaded_at[env] + self._steps(env) - self.t, 0)

    def taking_over(self) -> list[int]:
        """The envs whose chunk asked ahead takes over at this step."""
        return [e for e in range(self.num_envs) if self.in_flight[e] is not None and self.left(e) == 0]

    def failures(self) -> int:
        """How many failed requests ahead are needed at this step."""
        return len({self.in_flight[e][0] for e in self.taking_over() if self.in_flight[e][1] is None})  # type: ignore[index]

    def requests(self) -> tuple[list[int], list[int]]:
        """Take over the chunks asked ahead that are needed now; then the envs due now and those
        to ask ahead at this step."""
        for env in self.taking_over():
            asked, row = self.in_flight[env]  # type: ignore[misc]
            self.in_flight[env] = None
            if row is not None:
                self.load([env], row[None, self.t - asked:])
        idle = [e for e in range(self.num_envs) if not self.paused[e] and self.in_flight[e] is None]
        now = [e for e in idle if self.left(e) == 0]

        def within(steps: int) -> list[int]:
            return [e for e in idle if 0 < self.left(e) <= steps and self.asked[e] < self.t]

        ahead = within(self.m)
        if self.w and (now or ahead):
            ahead = within(self.m + self.w)
        return now, ahead

    def answer(self, now: list[int], ahead: list[int], chunk: np.ndarray, failed: bool = False) -> None:
        """The chunk of the request sent at this step (rows: the envs in ascending order), or its
        failure (a request ahead only)."""
        for row, env in enumerate(sorted(now + ahead)):
            self.asked[env] = self.t
            self.requests_per_env[env] += 1
            if env in now:
                self.load([env], chunk[row : row + 1])
            else:
                self.in_flight[env] = (self.t, None if failed else chunk[row])

    def reset(self, env_ids: list[int]) -> None:
        super().reset(env_ids)
        for env in env_ids:
            self.in_flight[env] = None

    def pause(self, env_ids: list[int]) -> None:
        super().pause(env_ids)
        for env in env_ids:
            self.in_flight[env] = None


@settings(max_examples=200, deadline=None)
@given(
    num_envs=st.integers(1, 9),
    execute_steps=st.one_of(st.none(), st.integers(1, 6)),
    strategy=st.sampled_from(STRATEGIES),
    aggregate=st.sampled_from(AGGREGATES),
    decay=st.sampled_from([0.0, 0.01, 0.5, -0.2]),
    steps=st.integers(1, 50),
    reset_probability=st.sampled_from([0.0, 0.05, 0.3]),
    pause_probability=st.sampled_from([0.0, 0.05]),
    inference_mode=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(
    num_envs: int,
    execute_steps: int | None,
    strategy: str,
    aggregate: str,
    decay: float,
    steps: int,
    reset_probability: float,
    pause_probability: float,
    inference_mode: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    if strategy == "ensemble":
        aggregate = "replace"
    weight, rate = float(rng.uniform(0, 1)), float(rng.uniform(0.05, 2.0))
    scheduler = ActionChunkScheduler(
        num_envs, "cpu", execute_steps=execute_steps, strategy=strategy, ensemble_decay=decay,
        aggregate=aggregate, aggregate_weight=weight, aggregate_decay=rate, dtype=torch.float64,
    )
    reference = ReferenceScheduler(num_envs, execute_steps, strategy, decay, aggregate, weight, rate)
    for step in range(steps):
        with torch.inference_mode(inference_mode and step % 2 == 0):  # Arena steps in inference mode
            due = scheduler.due_envs()
            assert due.tolist() == reference.due()
            if len(due):
                horizon = int(rng.integers(1, 9))
                chunk = rng.normal(size=(len(due), horizon, ACTION_DIM))
                scheduler.load(due, torch.from_numpy(chunk))
                reference.load(due.tolist(), chunk)
            if len(scheduler.paused_envs) == num_envs and scheduler.horizon == 0:
                return  # everything paused before any chunk: there is no action to give
            actions = scheduler.step()
        assert actions.shape == (num_envs, ACTION_DIM)
        np.testing.assert_allclose(actions.numpy(), reference.step(), rtol=1e-9, atol=1e-9)
        resets = np.flatnonzero(rng.random(num_envs) < reset_probability)
        scheduler.reset(resets)
        reference.reset(resets.tolist())
        pauses = np.flatnonzero(rng.random(num_envs) < pause_probability)
        scheduler.pause(pauses)
        reference.pause(pauses.tolist())



@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    num_envs=st.integers(1, 8),
    execute_steps=st.one_of(st.none(), st.integers(1, 8)),
    prefetch_steps=st.integers(1, 5),
    prefetch_window=st.integers(0, 4),
    aggregate=st.sampled_from(AGGREGATES),
    steps=st.integers(10, 50),
    reset_probability=st.sampled_from([0.0, 0.05, 0.1, 0.2]),
    pause_probability=st.sampled_from([0.0, 0.03]),
    arrival_probability=st.sampled_from([1.0, 0.5, 0.1, 0.0]),
    failure_probability=st.sampled_from([0.0, 0.3]),
    inference_mode=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_prefetch_matches_reference(
    num_envs: int,
    execute_steps: int | None,
    prefetch_steps: int,
    prefetch_window: int,
    aggregate: str,
    steps: int,
    reset_probability: float,
    pause_probability: float,
    arrival_probability: float,
    failure_probability: float,
    inference_mode: bool,
    seed: int,
) -> None:
    """Requests (which envs, at which step) and actions match the reference whenever the chunks
    asked ahead arrive: at once, some steps later in random order, or only when needed; a request
    ahead that failed raises when its chunk is needed (once per request) and costs only its envs."""
    rng = np.random.default_rng(seed)
    weight, rate = float(rng.uniform(0, 1)), float(rng.uniform(0.05, 2.0))
    scheduler = ActionChunkScheduler(
        num_envs, "cpu", execute_steps=execute_steps, aggregate=aggregate, aggregate_weight=weight,
        aggregate_decay=rate, prefetch_steps=prefetch_steps, prefetch_window=prefetch_window, dtype=torch.float64,
    )
    reference = PrefetchReference(num_envs, execute_steps, aggregate, weight, rate, prefetch_steps, prefetch_window)
    unanswered: list[tuple[Future[torch.Tensor], torch.Tensor | None, set[int]]] = []  # future, chunk, its envs
    shortest = prefetch_steps + prefetch_window + 1  # a chunk asked ahead keeps an action after the skipped ones
    for step in range(steps):
        needed = set(reference.taking_over())
        if needed:
            event("a chunk asked ahead takes over")
        for index in rng.permutation(len(unanswered)).tolist():
            future, chunk, env_ids = unanswered[index]
            if env_ids & needed or rng.random() < arrival_probability:
                _answer(future, chunk)
                event("a chunk asked ahead arrives steps later")
                if any(not request[0].done() for request in unanswered[:index]):
                    event("chunks asked ahead arrive out of order")
        unanswered = [request for request in unanswered if not request[0].done()]
        failures = reference.failures()
        with torch.inference_mode(inference_mode and step % 2 == 0):  # Arena steps in inference mode
            for _ in range(failures):  # the policy's get_action raises; the runner may call it again
                with pytest.raises(RuntimeError, match="request ahead failed"):
                    scheduler.collect(0.0)
                event("a request ahead fails")
            scheduler.collect(0.0)  # everything needed now has arrived: no waiting
            requests = scheduler.requests()
        now, ahead = reference.requests()
        assert (requests.now.tolist(), requests.ahead.tolist()) == (now, ahead)
        if any(reference.left(e) > prefetch_steps for e in ahead):
            event("the window widens a request")
        if now and ahead:
            event("a request carries envs due now and envs asked ahead")
        if requests:
            rows = rng.normal(size=(len(requests.env_ids), int(rng.integers(shortest, shortest + 6)), ACTION_DIM))
            failed = not now and rng.random() < failure_probability
            reference.answer(now, ahead, rows, failed)
            with torch.inference_mode(inference_mode and step % 2 == 0):
                chunk = torch.from_numpy(rows)
                if len(requests.now):
                    scheduler.deliver(requests, chunk)
                else:
                    sent: Future[torch.Tensor] = Future()
                    scheduler.expect(requests.ahead, sent)
                    if rng.random() < arrival_probability:
                        _answer(sent, None if failed else chunk)
                    else:
                        unanswered.append((sent, None if failed else chunk, set(ahead)))
        assert scheduler.in_flight_envs.tolist() == [e for e in range(num_envs) if reference.in_flight[e] is not None]
        if len(scheduler.paused_envs) == num_envs and scheduler.horizon == 0:
            return  # everything paused before any chunk: there is no action to give
        with torch.inference_mode(inference_mode and step % 2 == 1):
            actions = scheduler.step()
        np.testing.assert_allclose(actions.numpy(), reference.step(), rtol=1e-9, atol=1e-9)
        resets = np.flatnonzero(rng.random(num_envs) < reset_probability)
        scheduler.reset(resets)
        reference.reset(resets.tolist())
        pauses = np.flatnonzero(rng.random(num_envs) < pause_probability)
        scheduler.pause(pauses)
        reference.pause(pauses.tolist())
    assert scheduler.requests_per_env.tolist() == reference.requests_per_env


def test_a_failed_request_ahead_costs_only_its_own_envs() -> None:
    """Two requests ahead needed at one step, the older one failed: it raises, and only its env
    is due again; the other env takes its chunk (before the fix, both chunks were dropped)."""
    scheduler = ActionChunkScheduler(2, "cpu", execute_steps=8, prefetch_steps=3)
    asked: dict[int, tuple[list[int], Future[torch.Tensor]]] = {}  # step -> (envs asked ahead, future)
    for step in range(9):
        scheduler.collect(0.0)
        requests = scheduler.requests()
        if len(requests.now):
            scheduler.deliver(requests, torch.zeros(len(requests.env_ids), 8, 1))
        elif len(requests.ahead):
            future: Future[torch.Tensor] = Future()
            scheduler.expect(requests.ahead, future)
            asked[step] = (requests.ahead.tolist(), future)
            if step == 5:
                future.set_result(torch.zeros(1, 4, 1))  # 3 actions skipped at step 8: 1 left
        scheduler.step()
        if step == 0:
            scheduler.reset(np.array([1]))  # env 1 runs a step behind env 0
    # env 0 asked at step 5 (3 left), env 1 at step 6 (3 left), env 0 again at step 8 (1 left)
    assert {step: envs for step, (envs, _) in asked.items()} == {5: [0], 6: [1], 8: [0]}
    asked[6][1].set_exception(RuntimeError("model crashed"))
    asked[8][1].set_result(torch.full((1, 4, 1), 7.0))
    with pytest.raises(RuntimeError, match="model crashed"):
        scheduler.collect(0.0)
    scheduler.collect(0.0)
    requests = scheduler.requests()
    assert (requests.now.tolist(), requests.ahead.tolist()) == ([1], [0])  # env 0: 3 actions left
    assert scheduler.remaining().tolist() == [3, 0]
    scheduler.deliver(requests, torch.tensor([5.0, 1.0]).view(2, 1, 1).expand(2, 8, 1))
    assert scheduler.step()[:, 0].tolist() == [7.0, 1.0]


def _answer(future: Future[torch.Tensor], chunk: torch.Tensor | None) -> None:
    """Complete a request ahead with its chunk, or (``None``) with a failure."""
    if chunk is None:
        future.set_exception(RuntimeError("the request ahead failed"))
    else:
        future.set_result(chunk)


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


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_paused_envs_hold_their_last_action_and_are_never_due(strategy: str) -> None:
    scheduler = ActionChunkScheduler(3, "cpu", execute_steps=2, strategy=strategy, ensemble_decay=0.0)
    scheduler.load(scheduler.due_envs(), torch.arange(18.0).view(3, 3, 2))
    first = scheduler.step()
    scheduler.pause(np.array([1]))
    assert scheduler.paused_envs.tolist() == [1]
    for _ in range(5):
        due = scheduler.due_envs()
        assert 1 not in due.tolist()
        if len(due):
            scheduler.load(due, torch.zeros(len(due), 3, 2))
        assert scheduler.step()[1].tolist() == first[1].tolist()
    with pytest.raises(ActionError, match=r"envs \[1\] are paused"):
        scheduler.load(np.array([1]), torch.zeros(1, 3, 2))
    scheduler.reset(np.array([1]))
    assert 1 in scheduler.due_envs().tolist() and scheduler.paused_envs.tolist() == []


def test_buffers_made_in_inference_mode_stay_usable_outside() -> None:
    scheduler = ActionChunkScheduler(2, "cpu", execute_steps=2)
    with torch.inference_mode():
        scheduler.load(scheduler.due_envs(), torch.zeros(2, 4, 3))
        scheduler.step()
    scheduler.reset(np.array([0]))
    scheduler.load(scheduler.due_envs(), torch.ones(1, 4, 3))
    assert scheduler.step()[:, 0].tolist() == [1.0, 0.0]


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


def test_waiting_for_a_chunk_in_flight_is_bounded() -> None:
    from concurrent.futures import Future

    from arena_adapters.errors import TransportTimeout

    scheduler = ActionChunkScheduler(2, "cpu", execute_steps=2, prefetch_steps=1)
    scheduler.load(scheduler.due_envs(), torch.zeros(2, 4, 1))
    scheduler.step()
    requests = scheduler.requests()
    assert requests.now.tolist() == [] and requests.ahead.tolist() == [0, 1]
    never: Future[torch.Tensor] = Future()
    scheduler.expect(requests.ahead, never)
    assert scheduler.in_flight_envs.tolist() == [0, 1] and scheduler.due_envs().tolist() == []
    scheduler.step()
    with pytest.raises(TransportTimeout, match=r"requested ahead of time at step 1 for envs \[0, 1\] did not arrive "
                                               r"within 0.05 s"):
        scheduler.collect(0.05)
    assert scheduler.in_flight_envs.tolist() == [] and scheduler.due_envs().tolist() == [0, 1]
    scheduler.reset(np.array([0]))  # a reset drops what is in flight
    scheduler.expect(np.array([1]), never)
    scheduler.reset(np.array([1]))
    assert scheduler.in_flight_envs.tolist() == []
