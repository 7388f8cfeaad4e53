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

Envs can be paused (:meth:`ActionChunkScheduler.pause`): they hold their last action and are never
due until reset.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from arena_adapters.errors import ActionError, ConfigError
from arena_adapters.parts import EnvIds

Strategy = Literal["replay", "lockstep", "ensemble"]
STRATEGIES: tuple[str, ...] = ("replay", "lockstep", "ensemble")
_MAX_LOG_WEIGHT_SPAN = 80.0  # exp(80) stays well inside float32 range


def validate_schedule(strategy: str, execute_steps: int | None) -> None:
    """Raise :class:`ConfigError` for an unknown strategy or an ``execute_steps`` below 1."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"option 'strategy': expected one of {list(STRATEGIES)}, got {strategy!r}")
    if execute_steps is not None and (not isinstance(execute_steps, int) or execute_steps < 1):
        raise ConfigError(f"option 'execute_steps': expected an int >= 1 or None, got {execute_steps!r}")


class ActionChunkScheduler:
    """Stores action chunks per env on the env device and steps through them.

    Args:
        num_envs: number of envs ``N``.
        device: the env device; chunks and returned actions live there.
        execute_steps: actions executed from each chunk before the env is queried again
            (``k``). ``None`` executes whole chunks (``1`` for ``ensemble``).
        strategy: ``"replay"``, ``"lockstep"`` or ``"ensemble"``.
        ensemble_decay: ``m`` of the ensemble weights ``exp(-m * i)`` (ACT uses 0.01).
        action_dim: expected action dimension ``D``; taken from the first chunk if ``None``.
        dtype: dtype of stored and returned actions.

    Usage per control step::

        env_ids = scheduler.due_envs()          # host int64 array; empty on replay steps
        if len(env_ids):
            scheduler.load(env_ids, chunk)      # chunk: (len(env_ids), H, D) on the device
        actions = scheduler.step()              # (N, D)
    """

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        *,
        execute_steps: int | None = None,
        strategy: Strategy | str = "replay",
        ensemble_decay: float = 0.01,
        action_dim: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"option 'num_envs': expected an int >= 1, got {num_envs!r}")
        validate_schedule(strategy, execute_steps)
        if action_dim is not None and action_dim < 1:
            raise ConfigError(f"option 'action_dim': expected an int >= 1, got {action_dim!r}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.strategy = strategy
        self.execute_steps = 1 if execute_steps is None and strategy == "ensemble" else execute_steps
        self.ensemble_decay = float(ensemble_decay)
        self.action_dim = action_dim
        self.dtype = dtype

        self.t = 0
        self._start = np.zeros(num_envs, dtype=np.int64)
        self._due = np.zeros(num_envs, dtype=np.int64)
        self._next_due = 0
        self.requests_per_env = np.zeros(num_envs, dtype=np.int64)
        self.load_calls = 0

        self._last_load = np.zeros(num_envs, dtype=np.int64)
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
        """Host int64 array of the envs that need a new chunk before the next :meth:`step`.

        Costs O(1) on replay steps; never touches the device.
        """
        if self.t < self._next_due:
            return _EMPTY_IDS
        due = np.flatnonzero(self._due <= self.t)
        if self.strategy == "lockstep" and len(due):
            return self._active_ids
        return due

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

    # ------------------------------------------------------------------------ loading chunks

    def load(self, env_ids: EnvIds, chunk: torch.Tensor) -> None:
        """Give the envs ``env_ids`` (host int64, as from :meth:`due_envs`) new chunks.

        ``chunk`` is ``(len(env_ids), H, D)``; any ``H >= 1`` works: the env executes
        ``min(execute_steps, H)`` actions from it before it is due again.

        Raises:
            ActionError: wrong number of rows, wrong action dimension, empty chunk or not 3-D.
        """
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if not isinstance(chunk, torch.Tensor):
            raise ActionError(f"action chunk: expected a torch.Tensor, got {type(chunk).__name__}")
        if chunk.ndim != 3:
            raise ActionError(
                f"action chunk: expected shape (k={len(env_ids)}, H, D), got {tuple(chunk.shape)}"
            )
        rows, horizon, dim = chunk.shape
        if rows != len(env_ids):
            raise ActionError(
                f"action chunk: expected {len(env_ids)} rows (one per queried env), got shape "
                f"{tuple(chunk.shape)}"
            )
        if horizon < 1:
            raise ActionError(f"action chunk: empty horizon, shape {tuple(chunk.shape)}")
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
            self._buffer[ids.unsqueeze(1), slots] = chunk
        steps = horizon if self.execute_steps is None else min(self.execute_steps, horizon)
        self._start[env_ids] = self.t
        self._due[env_ids] = self.t + steps
        self._next_due = int(self._due.min())
        self.requests_per_env[env_ids] += 1
        self.load_calls += 1

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
        self._next_due = self.t
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


_NEVER = np.iinfo(np.int64).max // 2
_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_EMPTY_IDS.setflags(write=False)
