"""The shared action-chunk scheduler: which envs need a new chunk, and which action each env takes.

Policy servers return chunks of ``H`` future actions per env. The scheduler stores them on the env
device and hands out one action per env per control step. Actions live in a ring buffer
``(N, capacity, D)`` indexed by time: the action an env takes at step ``t`` is in column
``t % capacity``, whatever step its chunk was loaded at, so a step reads one column for all envs
(one strided copy on the device). A host-side mirror of when each env's chunk runs out decides
which envs need a new chunk, so a step that only replays stored actions does no device-to-host
synchronisation and no Python loop over envs.

Time is counted in control steps ``t``. Env ``e`` whose chunk was loaded at ``start[e]`` is *due*
for a new chunk at ``due[e] = start[e] + min(execute_steps, len(chunk))``; an env that was reset (or
never loaded) is due at once.

Strategies:
    ``replay`` (default): open-loop replay of ``execute_steps`` of each chunk's actions, per env, so
        envs reset at different times query out of phase and only the due envs are queried.
    ``lockstep``: whenever any env is due, all envs are queried together (Isaac Lab Arena's way).
    ``ensemble``: ACT-style temporal ensembling. Every chunk an env receives is kept for the steps
        it covers; the action for a step is the weighted mean of all predictions for that step, with
        weight ``exp(-decay * age)`` relative to the oldest, ``age`` being the prediction's step
        minus the oldest's (with a query every step, ACT's ``exp(-decay * i)`` for the i-th
        oldest). ``execute_steps`` defaults to 1 (query every step).

How a new chunk merges with the rest of the old one (``aggregate``; ``replay`` and ``lockstep``):
over the ``n`` steps both cover (the old plan's actions not executed yet), the action for the
``i``-th of them (``i = 0 .. n-1``) is ``w_i * new + (1 - w_i) * old``, as LeRobot's async
``aggregate_fn`` does; after them the new chunk alone. ``w_i`` is
    ``replace`` (default): 1, the new chunk replaces the old;
    ``average``: ``aggregate_weight`` (0.5: the mean; LeRobot's ``weighted_average`` is 0.7);
    ``linear``: ``(i + 1) / (n + 1)``, from the old plan to the new one step by step;
    ``exponential``: ``1 - exp(-aggregate_decay * (i + 1))``.
"The old plan" is what the env would have done: already merged actions merge again.

Asynchronous prefetch (``prefetch_steps = m``, ``replay``): an env with ``r <= m`` actions left
is requested ahead of time (:meth:`ActionChunkScheduler.requests`) with the observation of that
step; the envs reaching that point at one step share one request, and a step that must query
some env synchronously anyway carries them in the same request. The chunk takes over ``r``
steps later, when the old one runs out, and its first ``r`` actions, whose steps have passed, are
skipped. An env is asked ahead one step after its last request at the earliest (the same
observation would bring the same chunk), so prefetch needs ``execute_steps >= 2``. Counting in
control steps (not wall time) keeps runs reproducible: which actions are taken never depends on
how fast the server answers; a chunk that has not arrived when it is needed is waited for
(:meth:`ActionChunkScheduler.collect`, bounded).

One server answers one request at a time, so envs whose chunks run out at different steps (episodes
out of phase) cost one inference each: with ``G`` such groups per ``execute_steps`` steps, the
requests ahead alone take ``G * latency``, and once that exceeds the steps' own time the server, not
the env, sets the pace. ``prefetch_window = w`` merges them: a request that goes out at a step
(an env reached ``m`` actions left, or one is due now) also carries the envs that will reach ``m``
within the next ``w`` steps, asked early from this step's observation. Fewer, larger requests, each
chunk planned from an observation up to ``w`` steps older; ``m + w`` must stay below the chunk length.

Envs can be paused (:meth:`ActionChunkScheduler.pause`): they hold their last action and are never
due until reset.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_EXCEPTION, Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from arena_adapters.errors import ActionError, ConfigError, TransportTimeout
from arena_adapters.parts import EnvIds

Strategy = Literal["replay", "lockstep", "ensemble"]
STRATEGIES: tuple[str, ...] = ("replay", "lockstep", "ensemble")
Aggregate = Literal["replace", "average", "linear", "exponential"]
AGGREGATES: tuple[str, ...] = ("replace", "average", "linear", "exponential")
_MAX_LOG_WEIGHT_SPAN = 80.0  # exp(80) stays well inside float32 range


def validate_schedule(
    strategy: str, execute_steps: int | None, aggregate: str = "replace", prefetch_steps: int = 0,
    prefetch_window: int = 0,
) -> None:
    """Raise :class:`ConfigError` for an unknown strategy or aggregation, an ``execute_steps``
    below 1, or a combination the strategy does not support."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"option 'strategy': expected one of {list(STRATEGIES)}, got {strategy!r}")
    if execute_steps is not None and (not isinstance(execute_steps, int) or execute_steps < 1):
        raise ConfigError(f"option 'execute_steps': expected an int >= 1 or None, got {execute_steps!r}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"option 'aggregate': expected one of {list(AGGREGATES)}, got {aggregate!r}")
    if aggregate != "replace" and strategy == "ensemble":
        raise ConfigError(
            f"option 'aggregate' works with strategy 'replay' or 'lockstep' (ensemble merges every "
            f"prediction itself), got aggregate={aggregate!r} with strategy 'ensemble'"
        )
    if not isinstance(prefetch_steps, int) or prefetch_steps < 0:
        raise ConfigError(f"option 'prefetch_steps': expected an int >= 0, got {prefetch_steps!r}")
    if prefetch_steps and strategy != "replay":
        raise ConfigError(f"option 'prefetch_steps' works with strategy 'replay', not {strategy!r}")
    if not isinstance(prefetch_window, int) or prefetch_window < 0:
        raise ConfigError(f"option 'prefetch_window': expected an int >= 0, got {prefetch_window!r}")
    if prefetch_window and not prefetch_steps:
        raise ConfigError(f"option 'prefetch_window' merges requests ahead: it needs prefetch_steps >= 1, got "
                          f"prefetch_window={prefetch_window} with prefetch_steps=0")


def blend_weights(
    aggregate: str, overlap: torch.Tensor, horizon: int, weight: float = 0.5, decay: float = 0.5
) -> torch.Tensor:
    """The new chunk's weight ``w_i`` at each of its ``horizon`` steps, per row: ``(rows, horizon)``.

    ``overlap`` holds each row's number of steps ``n`` still covered by the old plan (int64, on the
    chunk's device); ``w_i = 1`` for ``i >= n``. See the module docstring for the kinds.
    """
    steps = torch.arange(horizon, device=overlap.device)
    inside = steps.unsqueeze(0) < overlap.unsqueeze(1)
    counts = (steps + 1).to(torch.float64).unsqueeze(0)  # i + 1
    if aggregate == "average":
        blended = torch.full((1, horizon), weight, dtype=torch.float64, device=overlap.device)
    elif aggregate == "linear":
        blended = counts / (overlap.to(torch.float64).unsqueeze(1) + 1)
    elif aggregate == "exponential":
        blended = 1.0 - torch.exp(-decay * counts)
    else:
        blended = torch.ones(1, horizon, dtype=torch.float64, device=overlap.device)
    return torch.where(inside, blended, 1.0)


@dataclass(frozen=True)
class Requests:
    """The envs to query at this step (from :meth:`ActionChunkScheduler.requests`).

    Attributes:
        now: envs that have no action left and nothing in flight: their chunk is needed now.
        ahead: envs to request ahead of time (prefetch): their chunk takes over later.
    """

    now: EnvIds
    ahead: EnvIds

    @property
    def env_ids(self) -> EnvIds:
        """All envs to send in one request, ascending (the rows of the chunk to deliver)."""
        if not len(self.ahead):
            return self.now
        if not len(self.now):
            return self.ahead
        union: EnvIds = np.union1d(self.now, self.ahead)
        return union

    def __bool__(self) -> bool:
        return bool(len(self.now) or len(self.ahead))


@dataclass
class _Flight:
    future: Future[torch.Tensor]
    env_ids: EnvIds
    origin: int


class _InFlight:
    """Which env waits for which request sent ahead of time, and the step it was sent at."""

    def __init__(self, num_envs: int) -> None:
        self.flight_of = np.full(num_envs, -1, dtype=np.int64)
        self.flights: dict[int, _Flight] = {}
        self._next = 0

    def add(self, future: Future[torch.Tensor], env_ids: EnvIds, origin: int) -> None:
        self.flights[self._next] = _Flight(future, env_ids, origin)
        self.flight_of[env_ids] = self._next
        self._next += 1

    def drop(self, env_ids: EnvIds | None) -> None:
        if not self.flights:
            return
        if env_ids is None:
            self.flight_of[:] = -1
        else:
            self.flight_of[env_ids] = -1
        used = set(np.unique(self.flight_of[self.flight_of >= 0]).tolist())
        for flight_id in [f for f in self.flights if f not in used]:
            del self.flights[flight_id]


class ActionChunkScheduler:
    """Stores action chunks per env on the env device and steps through them.

    Args:
        num_envs: number of envs ``N``.
        device: the env device; chunks and returned actions live there.
        execute_steps: actions executed from each chunk before the env is queried again
            (``k``). ``None`` executes whole chunks (``1`` for ``ensemble``).
        strategy: ``"replay"``, ``"lockstep"`` or ``"ensemble"``.
        ensemble_decay: ``m`` of the ensemble weights ``exp(-m * i)`` (ACT uses 0.01).
        aggregate: how a new chunk merges with the rest of the old one: ``"replace"``,
            ``"average"``, ``"linear"`` or ``"exponential"`` (see the module docstring).
        aggregate_weight: the new chunk's weight for ``"average"``, in [0, 1].
        aggregate_decay: the rate of ``"exponential"``, > 0.
        prefetch_steps: request an env ahead of time when it has this many actions left (0: off).
        prefetch_window: a request also carries the envs that reach ``prefetch_steps`` within
            this many further steps (0: each group of envs is asked when it gets there).
        action_dim: expected action dimension ``D``; taken from the first chunk if ``None``.
        dtype: dtype of stored and returned actions.

    Usage per control step::

        scheduler.collect(timeout_s)            # chunks requested ahead that are needed now
        requests = scheduler.requests()         # empty on replay steps (host arrays)
        if requests.now.size:                   # some env has no action left: query, wait
            scheduler.deliver(requests, infer(requests.env_ids))
        elif requests.ahead.size:               # only requests ahead: send in the background
            scheduler.expect(requests.ahead, submit(requests.ahead))   # a Future of the chunk
        actions = scheduler.step()              # (N, D)

    Without prefetch, ``due_envs()`` + ``load(env_ids, chunk)`` + ``step()`` are enough.
    """

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        *,
        execute_steps: int | None = None,
        strategy: Strategy | str = "replay",
        ensemble_decay: float = 0.01,
        aggregate: Aggregate | str = "replace",
        aggregate_weight: float = 0.5,
        aggregate_decay: float = 0.5,
        prefetch_steps: int = 0,
        prefetch_window: int = 0,
        action_dim: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"option 'num_envs': expected an int >= 1, got {num_envs!r}")
        validate_schedule(strategy, execute_steps, aggregate, prefetch_steps, prefetch_window)
        if action_dim is not None and action_dim < 1:
            raise ConfigError(f"option 'action_dim': expected an int >= 1, got {action_dim!r}")
        if not 0.0 <= aggregate_weight <= 1.0:
            raise ConfigError(f"option 'aggregate_weight': expected a value in [0, 1], got {aggregate_weight!r}")
        if not aggregate_decay > 0.0:
            raise ConfigError(f"option 'aggregate_decay': expected a value > 0, got {aggregate_decay!r}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.strategy = strategy
        self.execute_steps = 1 if execute_steps is None and strategy == "ensemble" else execute_steps
        self.ensemble_decay = float(ensemble_decay)
        self.aggregate = aggregate
        self.aggregate_weight = float(aggregate_weight)
        self.aggregate_decay = float(aggregate_decay)
        self.prefetch_steps = prefetch_steps
        self.prefetch_window = prefetch_window
        self.action_dim = action_dim
        self.dtype = dtype

        self.t = 0
        self._due = np.zeros(num_envs, dtype=np.int64)
        self._end = np.zeros(num_envs, dtype=np.int64)  # first step the stored plan does not cover
        self._next_due = 0
        self.requests_per_env = np.zeros(num_envs, dtype=np.int64)
        self.load_calls = 0
        self._in_flight = _InFlight(num_envs)
        self._blend_tables: dict[int, torch.Tensor] = {}

        self._last_load = np.zeros(num_envs, dtype=np.int64)  # ensemble: step of the newest prediction
        self._asked_at = np.full(num_envs, -1, dtype=np.int64)  # step of the observation behind the plan
        self._paused = np.zeros(num_envs, dtype=bool)
        self._active_ids = np.arange(num_envs, dtype=np.int64)
        self._capacity = 0
        # Normal (not inference-mode) tensors, so that callers inside and outside
        # torch.inference_mode() can both update them.
        with torch.inference_mode(False):
            self._buffer = torch.empty(0, device=self.device, dtype=dtype)
            self._weights = torch.empty(0, device=self.device, dtype=dtype)
            self._held_actions = torch.empty(0, device=self.device, dtype=dtype)
            self._held_mask = torch.zeros(num_envs, 1, dtype=torch.bool, device=self.device)
        self._last_actions: torch.Tensor | None = None

    # ------------------------------------------------------------------------- the step path

    def due_envs(self) -> EnvIds:
        """Host int64 array of the envs that need a new chunk before the next :meth:`step` and
        have none in flight (with ``lockstep``: every active env, when any is due).

        Costs O(1) on replay steps; never touches the device.
        """
        if self.t < self._next_due:
            return _EMPTY_IDS
        due = np.flatnonzero(self._due <= self.t)
        if self._in_flight.flights:
            due = due[self._in_flight.flight_of[due] < 0]
        if self.strategy == "lockstep" and len(due):
            return self._active_ids
        return due

    def ahead_envs(self, sending: bool = False) -> EnvIds:
        """Host array of the envs to request ahead of time at this step: ``0 < left <=
        prefetch_steps`` actions left, nothing in flight, and a chunk that was not requested at this
        very step. With ``prefetch_window = w``, when there are any (or ``sending``: a request goes
        out at this step anyway), also those with ``left <= prefetch_steps + w``. Empty without
        prefetch; O(1) while no env is that close."""
        steps = self.prefetch_steps
        reach = steps + self.prefetch_window
        if not steps or self._next_due - self.t > (reach if sending else steps):
            return _EMPTY_IDS
        left = self._due - self.t
        waiting = (left > 0) & (self._in_flight.flight_of < 0) & (self._asked_at < self.t)
        ahead = waiting & (left <= steps)
        if reach > steps and (sending or ahead.any()):
            ahead = waiting & (left <= reach)
        return np.flatnonzero(ahead)

    def requests(self) -> Requests:
        """The envs to query at this step: those due now, and (with prefetch) those to request ahead,
        to be sent together when any env is due now."""
        now = self.due_envs()
        return Requests(now, self.ahead_envs(sending=len(now) > 0))

    def due_within(self, steps: int) -> EnvIds:
        """Host array of the active envs that are not due now but will be within ``steps`` steps
        (candidates for a request ahead of time). O(1) while no env is that close."""
        if self._next_due - self.t > steps:
            return _EMPTY_IDS
        left = self._due - self.t
        return np.flatnonzero((left > 0) & (left <= steps))

    def step(self) -> torch.Tensor:
        """Return the ``(N, D)`` actions of this control step and advance time by one.

        Raises:
            ActionError: some env is due and was not given a chunk by :meth:`load`.
        """
        if self.t >= self._next_due:
            missing = np.flatnonzero(self._due <= self.t)
            if len(missing):
                raise ActionError(
                    f"envs {missing[:16].tolist()}{'...' if len(missing) > 16 else ''} have no action "
                    f"left for step {self.t}: load a chunk for them first"
                )
        if not self._capacity:
            raise ActionError("no action chunk was ever loaded: every env is paused")
        slot = self.t % self._capacity
        if self.strategy == "ensemble":
            actions = self._buffer[:, slot] / self._weights[:, slot].unsqueeze(1)
            self._buffer[:, slot].zero_()
            self._weights[:, slot].zero_()
        else:
            actions = self._buffer[:, slot].clone()
        if len(self._active_ids) < self.num_envs:
            actions = torch.where(self._held_mask, self._held_actions, actions)
        self.t += 1
        self._last_actions = actions
        return actions

    # ------------------------------------------------------------------- chunks in flight

    def deliver(self, requests: Requests, chunk: torch.Tensor) -> None:
        """Hand over the chunk answering ``requests`` (rows in the order of ``requests.env_ids``),
        sent at this step: the envs due now take their rows at once, the others when their
        current chunk runs out (as if requested ahead of time)."""
        if not len(requests.ahead):
            self.load(requests.now, chunk)
            return
        env_ids = requests.env_ids
        _check_rows(chunk, len(env_ids))
        now_rows = torch.from_numpy(np.searchsorted(env_ids, requests.now)).to(chunk.device, non_blocking=True)
        ahead_rows = torch.from_numpy(np.searchsorted(env_ids, requests.ahead)).to(chunk.device, non_blocking=True)
        self.load(requests.now, chunk.index_select(0, now_rows))
        arrived: Future[torch.Tensor] = Future()
        arrived.set_result(chunk.index_select(0, ahead_rows))
        self.expect(requests.ahead, arrived)

    def expect(self, env_ids: EnvIds, future: Future[torch.Tensor]) -> None:
        """Record that the chunk of ``env_ids`` (ascending, as from :meth:`requests`) was requested
        at this step and will come through ``future`` (rows in the order of ``env_ids``)."""
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if len(env_ids):
            self._in_flight.add(future, env_ids, self.t)
            self._asked_at[env_ids] = self.t
            self.requests_per_env[env_ids] += 1

    def collect(self, timeout: float) -> None:
        """Load the chunks in flight that are needed at this step, waiting for them at most
        ``timeout`` seconds in all. O(1) when none is needed now.

        Raises:
            TransportTimeout: a needed chunk did not arrive within ``timeout``.
            whatever the request raised.
            In each case the envs of that one request are no longer waiting (they are due again);
            the other chunks needed now stay in flight, for the next call.
            ActionError: a chunk is not longer than the actions that elapsed while it was in flight.
        """
        in_flight = self._in_flight
        if not in_flight.flights or self.t < self._next_due:
            return
        due = np.flatnonzero(self._due <= self.t)
        waiting = due[in_flight.flight_of[due] >= 0]
        if not len(waiting):
            return
        deadline = time.monotonic() + timeout
        for flight_id in np.unique(in_flight.flight_of[waiting]).tolist():
            flight = in_flight.flights[flight_id]
            ids = waiting[in_flight.flight_of[waiting] == flight_id]
            try:  # a failure costs only its own envs: the other chunks needed now stay in flight
                chunk = _result(flight, deadline, timeout)
                skip = self.t - flight.origin
                _check_rows(chunk, len(flight.env_ids))
                if chunk.shape[1] <= skip:
                    raise ActionError(
                        f"a chunk requested ahead of time has {chunk.shape[1]} actions, none left after the "
                        f"{skip} steps that elapsed while it was in flight: lower prefetch_steps (plus "
                        f"prefetch_window) below the chunk length"
                    )
                rows = np.searchsorted(flight.env_ids, ids)
                if len(rows) < len(flight.env_ids):
                    chunk = chunk.index_select(0, torch.from_numpy(rows).to(chunk.device, non_blocking=True))
                self._load(ids, chunk[:, skip:], counts_request=False)
            finally:
                in_flight.drop(ids)

    @property
    def in_flight_envs(self) -> EnvIds:
        """Host array of the envs whose next chunk is in flight."""
        return np.flatnonzero(self._in_flight.flight_of >= 0)

    # ------------------------------------------------------------------------ loading chunks

    def load(self, env_ids: EnvIds, chunk: torch.Tensor) -> None:
        """Give the envs ``env_ids`` (host int64, as from :meth:`due_envs`) new chunks from this step.

        ``chunk`` is ``(len(env_ids), H, D)``; any ``H >= 1`` works: the env executes
        ``min(execute_steps, H)`` actions from it before it is due again. With an ``aggregate``
        other than ``replace``, the steps the old plan still covers are blended.

        Raises:
            ActionError: wrong number of rows, wrong action dimension, empty chunk or not 3-D.
        """
        self._load(np.asarray(env_ids, dtype=np.int64), chunk, counts_request=True)

    def _load(self, env_ids: EnvIds, chunk: torch.Tensor, counts_request: bool) -> None:
        rows, horizon, dim = _check_rows(chunk, len(env_ids))
        if self.action_dim is None:
            self.action_dim = dim
        elif dim != self.action_dim:
            raise ActionError(
                f"action chunk: expected action dimension {self.action_dim}, got shape {tuple(chunk.shape)}"
            )
        if rows == 0:
            return
        if self._paused[env_ids].any():
            raise ActionError(f"envs {env_ids[self._paused[env_ids]].tolist()} are paused: reset them first")
        if horizon > self._capacity:
            self._grow(horizon)
        chunk = chunk.to(device=self.device, dtype=self.dtype, non_blocking=True)
        ids = torch.from_numpy(env_ids).to(self.device, non_blocking=True)
        slots = (self.t + torch.arange(horizon, device=self.device)) % self._capacity
        if self.strategy == "ensemble":
            self._ensemble_load(env_ids, ids, slots, chunk)
        else:
            if self.aggregate != "replace":
                chunk = self._merged(env_ids, ids, slots, chunk)
            self._buffer[ids.unsqueeze(1), slots] = chunk
        steps = horizon if self.execute_steps is None else min(self.execute_steps, horizon)
        self._due[env_ids] = self.t + steps
        self._end[env_ids] = self.t + horizon
        self._next_due = int(self._due.min())
        if counts_request:
            self._asked_at[env_ids] = self.t
            self.requests_per_env[env_ids] += 1
            self.load_calls += 1

    def _merged(self, env_ids: EnvIds, ids: torch.Tensor, slots: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """``chunk`` blended with the old plan over the steps the old plan still covers."""
        horizon = chunk.shape[1]
        overlap = np.minimum(np.maximum(self._end[env_ids] - self.t, 0), horizon)
        if not overlap.any():  # host check: no device sync
            return chunk
        table = self._blend_tables.get(horizon)
        if table is None:  # row n: the new chunk's weights when the old plan covers n steps
            with torch.inference_mode(False):
                table = blend_weights(
                    self.aggregate, torch.arange(horizon + 1, device=self.device), horizon,
                    self.aggregate_weight, self.aggregate_decay,
                ).to(self.dtype)
            self._blend_tables[horizon] = table
        weights = table[torch.from_numpy(overlap).to(self.device, non_blocking=True)].unsqueeze(-1)
        old = self._buffer[ids.unsqueeze(1), slots]
        return torch.where(weights < 1, torch.lerp(old, chunk, weights), chunk)

    def _ensemble_load(self, env_ids: EnvIds, ids: torch.Tensor, slots: torch.Tensor, chunk: torch.Tensor) -> None:
        if abs(self.ensemble_decay) * self._capacity > _MAX_LOG_WEIGHT_SPAN:
            raise ConfigError(
                f"option 'ensemble_decay': |decay| * horizon must be <= {_MAX_LOG_WEIGHT_SPAN:g}, got "
                f"{self.ensemble_decay} * {self._capacity}"
            )
        # Weights relative to the newest prediction (weight 1): older ones gain exp(decay) per step.
        elapsed = torch.from_numpy(self.t - self._last_load[env_ids]).to(self.device, non_blocking=True)
        scale = torch.exp(self.ensemble_decay * elapsed.to(self.dtype))
        rows = ids.unsqueeze(1)
        self._weights[ids] *= scale.unsqueeze(1)
        self._buffer[ids] *= scale.view(-1, 1, 1)
        self._weights[rows, slots] += 1.0
        self._buffer[rows, slots] += chunk
        self._last_load[env_ids] = self.t

    def _grow(self, horizon: int) -> None:
        """Reallocate the ring buffers for chunks of ``horizon`` actions (rare: the first load, or a
        longer chunk than ever before), keeping the actions already stored at their times."""
        dim = self.action_dim
        assert dim is not None
        old_capacity, old_buffer, old_weights = self._capacity, self._buffer, self._weights
        self._capacity = horizon
        with torch.inference_mode(False):
            self._buffer = torch.zeros(self.num_envs, horizon, dim, device=self.device, dtype=self.dtype)
            if not old_capacity:
                self._held_actions = torch.zeros(self.num_envs, dim, device=self.device, dtype=self.dtype)
            if self.strategy == "ensemble":
                self._weights = torch.zeros(self.num_envs, horizon, device=self.device, dtype=self.dtype)
            if old_capacity:
                times = self.t + torch.arange(old_capacity, device=self.device)
                self._buffer[:, times % horizon] = old_buffer[:, times % old_capacity]
                if self.strategy == "ensemble":
                    self._weights[:, times % horizon] = old_weights[:, times % old_capacity]

    # ------------------------------------------------------------------------------ resets

    def reset(self, env_ids: EnvIds | None = None) -> None:
        """Drop the chunks of ``env_ids`` (host int64; ``None``: all envs): they are due at once.
        Paused envs among them resume."""
        env_ids = self._checked_ids(env_ids, "reset")
        if len(env_ids) == 0:
            return
        self._due[env_ids] = self.t
        self._end[env_ids] = self.t
        self._next_due = self.t
        self._in_flight.drop(env_ids)
        resumed = env_ids[self._paused[env_ids]]
        if len(resumed):
            self._set_paused(resumed, False)
        if self.strategy == "ensemble" and self._capacity:
            ids = torch.from_numpy(env_ids).to(self.device, non_blocking=True)
            self._buffer[ids] = 0
            self._weights[ids] = 0

    def pause(self, env_ids: EnvIds) -> None:
        """Stop querying ``env_ids``: they hold their last action (zeros if they never acted) until
        :meth:`reset` resumes them. For runners that mask out envs whose episodes will not count."""
        env_ids = self._checked_ids(env_ids, "pause")
        env_ids = env_ids[~self._paused[env_ids]]
        if len(env_ids) == 0:
            return
        self._due[env_ids] = _NEVER
        self._next_due = int(self._due.min())
        self._in_flight.drop(env_ids)
        self._set_paused(env_ids, True)
        if not self._capacity:
            return
        ids = torch.from_numpy(env_ids).to(self.device, non_blocking=True)
        last = self._last_actions if self._last_actions is not None else self._held_actions
        self._held_actions[ids] = last[ids].to(self.dtype)

    def _set_paused(self, env_ids: EnvIds, paused: bool) -> None:
        self._paused[env_ids] = paused
        self._active_ids = np.flatnonzero(~self._paused)
        ids = torch.from_numpy(env_ids).to(self.device, non_blocking=True)
        self._held_mask[ids] = paused

    def _checked_ids(self, env_ids: EnvIds | None, what: str) -> EnvIds:
        if env_ids is None:
            return np.arange(self.num_envs, dtype=np.int64)
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if len(env_ids) and (env_ids.min() < 0 or env_ids.max() >= self.num_envs):
            bad = env_ids[(env_ids < 0) | (env_ids >= self.num_envs)]
            raise ConfigError(f"{what}: env ids must be in [0, {self.num_envs}), got {bad[:8].tolist()}")
        return env_ids

    @property
    def paused_envs(self) -> EnvIds:
        """Host array of the paused envs."""
        return np.flatnonzero(self._paused)

    @property
    def horizon(self) -> int:
        """The longest chunk stored so far (0 before the first load)."""
        return self._capacity

    def remaining(self) -> EnvIds:
        """Host array: actions each env still has before it is due (0 = due now)."""
        return np.maximum(self._due - self.t, 0)


def _check_rows(chunk: torch.Tensor, expected_rows: int) -> tuple[int, int, int]:
    """``(rows, H, D)`` of a chunk for ``expected_rows`` envs, or :class:`ActionError`."""
    if not isinstance(chunk, torch.Tensor):
        raise ActionError(f"action chunk: expected a torch.Tensor, got {type(chunk).__name__}")
    if chunk.ndim != 3:
        raise ActionError(f"action chunk: expected shape (k={expected_rows}, H, D), got {tuple(chunk.shape)}")
    rows, horizon, dim = chunk.shape
    if rows != expected_rows:
        raise ActionError(
            f"action chunk: expected {expected_rows} rows (one per queried env), got shape {tuple(chunk.shape)}"
        )
    if horizon < 1:
        raise ActionError(f"action chunk: empty horizon, shape {tuple(chunk.shape)}")
    return rows, horizon, dim


def _result(flight: _Flight, deadline: float, timeout: float) -> torch.Tensor:
    """The chunk of a request in flight, waiting until ``deadline`` at most."""
    future = flight.future
    if not future.done():
        wait_futures([future], timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_EXCEPTION)
    if not future.done():
        raise TransportTimeout(
            f"the chunk requested ahead of time at step {flight.origin} for envs "
            f"{flight.env_ids[:16].tolist()} did not arrive within {timeout:g} s"
        )
    return future.result()


_NEVER = np.iinfo(np.int64).max // 2
_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_EMPTY_IDS.setflags(write=False)
