"""The policy object a runner uses: parts composed around the shared action scheduler."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import torch

from arena_adapters.errors import AdapterError, ConfigError, ObservationError
from arena_adapters.observations import batch_size_and_device
from arena_adapters.options import Option, reject_unknown, resolve_options
from arena_adapters.parts import (
    ActionTranslator,
    EnvIds,
    InferenceTransport,
    Observation,
    ObservationTranslator,
    Query,
    has_on_connect,
)
from arena_adapters.plugins import PluginRegistry, default_registry
from arena_adapters.prefetch import PendingChunks
from arena_adapters.records import (
    ANY_PROTOCOL,
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    PartRecord,
    TransportRecord,
)
from arena_adapters.scheduler import STRATEGIES, ActionChunkScheduler, validate_schedule
from arena_adapters.worker import TransportWorker, detach_from

POLICY_OPTIONS: tuple[Option, ...] = (
    Option("num_envs", int, None, "number of envs (default: from the first observation)"),
    Option("device", str, None, "env device (default: from the first observation)"),
    Option("execute_steps", int, None, "actions executed per chunk before re-querying (default: all)",
           minimum=1),
    Option("strategy", str, "replay", "chunk scheduling strategy", choices=STRATEGIES),
    Option("ensemble_decay", float, 0.01, "temporal ensembling weight decay m in exp(-m*i)"),
    Option("instruction", str, None, "task instruction sent with every observation"),
    Option("prefetch_steps", int, 0, "query an env in the background when it has this many actions left "
           "(0: off; replay strategy)", minimum=0),
)
"""Options every adapter takes; they configure the policy and its scheduler."""

PART_ROLES: dict[str, type[PartRecord]] = {
    "transport": TransportRecord,
    "observation_translator": ObservationTranslatorRecord,
    "action_translator": ActionTranslatorRecord,
}
"""Option names that swap one part of an adapter for another registered part."""


@dataclass
class InferenceStats:
    """Counters of the inferences a policy made.

    Attributes:
        queries: inference round trips (one per step that needed any chunk).
        env_requests: env observations sent (sum of queried envs over all queries).
        steps: control steps served.
        latencies_s: wall time of each inference: send, server, receive, action translation
            (measured where it runs: on the transport worker for background queries).
    """

    queries: int = 0
    env_requests: int = 0
    steps: int = 0
    latencies_s: list[float] = field(default_factory=list)


class Policy:
    """A loaded adapter: call :meth:`get_action` every control step.

    Build it with :func:`load_policy`. Nothing connects until the first :meth:`get_action`
    (or :meth:`connect`).
    """

    def __init__(
        self,
        name: str,
        observation_translator: ObservationTranslator,
        action_translator: ActionTranslator,
        transport: InferenceTransport,
        *,
        num_envs: int | None = None,
        device: str | torch.device | None = None,
        execute_steps: int | None = None,
        strategy: str = "replay",
        ensemble_decay: float = 0.01,
        instruction: str | None = None,
        prefetch_steps: int = 0,
    ) -> None:
        self.name = name
        self.observation_translator = observation_translator
        self.action_translator = action_translator
        self.transport = transport
        self.stats = InferenceStats()
        self._scheduler_options: dict[str, Any] = {
            "execute_steps": execute_steps,
            "strategy": strategy,
            "ensemble_decay": ensemble_decay,
        }
        self._instruction = instruction or ""
        self._instructions_per_env: list[str] | None = None
        self._connected = False
        self._closed = False
        self._num_envs_hint = num_envs
        self._pending_pause: EnvIds = np.zeros(0, dtype=np.int64)
        self._device_hint = None if device is None else torch.device(device)
        self.scheduler: ActionChunkScheduler | None = None
        validate_schedule(strategy, execute_steps)
        if prefetch_steps and strategy != "replay":
            raise ConfigError(f"option 'prefetch_steps' works with strategy 'replay', not {strategy!r}")
        self._prefetch_steps = prefetch_steps
        self._worker = TransportWorker(name) if prefetch_steps else None
        self._pending: PendingChunks | None = None
        if num_envs is not None and device is not None:
            self._make_scheduler(num_envs, torch.device(device))

    # --------------------------------------------------------------------------- lifecycle

    def connect(self) -> None:
        """Connect the transport and let the translators read server metadata. Idempotent."""
        self._check_open()
        if self._connected:
            return
        self.transport.connect()
        for translator in (self.observation_translator, self.action_translator):
            if has_on_connect(translator):
                translator.on_connect(self.transport)
        self._connected = True

    def close(self) -> None:
        """Release the transport's sockets and threads. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._worker is not None:
                self._worker.close()
            self.transport.close()

    def __enter__(self) -> Policy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise AdapterError(f"policy {self.name!r} is closed")

    # --------------------------------------------------------------------------- the step

    def get_action(self, observation: Observation) -> torch.Tensor:
        """Return the ``(num_envs, action_dim)`` actions for this control step.

        Queries the server only for the envs whose chunk ran out (see
        :class:`~arena_adapters.scheduler.ActionChunkScheduler`); otherwise replays stored actions
        without any device synchronisation.
        """
        self._check_open()
        scheduler = self.scheduler or self._make_scheduler(*self._shape_of(observation))
        env_ids = scheduler.due_envs()
        if len(env_ids) and self._pending is not None:
            for ids, chunk in self._pending.take(env_ids):
                scheduler.load(ids, chunk)
            env_ids = scheduler.due_envs()
        if len(env_ids):
            self._query(observation, scheduler, env_ids)
        if self._prefetch_steps:
            self._prefetch(observation, scheduler)
        self.stats.steps += 1
        return scheduler.step()

    def _shape_of(self, observation: Observation) -> tuple[int, torch.device]:
        num_envs, device = batch_size_and_device(observation)
        if self._num_envs_hint is not None and num_envs != self._num_envs_hint:
            raise ObservationError(
                f"observation has {num_envs} envs first, the policy was configured with num_envs={self._num_envs_hint}"
            )
        hint = self._device_hint
        if hint is not None and (hint.type, hint.index or 0) != (device.type, device.index or 0):
            raise ConfigError(f"option 'device': policy configured for {hint}, observations are on {device}")
        return num_envs, device

    def _query(self, observation: Observation, scheduler: ActionChunkScheduler, env_ids: EnvIds) -> None:
        query, request = self._request(observation, scheduler, env_ids)
        if self._worker is None:
            chunk = self._infer(request, query)
        else:
            chunk = self._worker.call(lambda: self._infer(request, query))
        scheduler.load(env_ids, chunk)

    def _prefetch(self, observation: Observation, scheduler: ActionChunkScheduler) -> None:
        assert self._worker is not None and self._pending is not None
        ahead = scheduler.due_within(self._prefetch_steps)
        if len(ahead):
            ahead = np.setdiff1d(ahead, self._pending.waiting(ahead), assume_unique=True)
        if len(ahead):
            query, request = self._request(observation, scheduler, ahead)
            request = detach_from(request, observation)
            future = self._worker.submit(lambda: self._infer(request, query))
            self._pending.add(future, ahead, scheduler.remaining()[ahead])

    def _request(self, observation: Observation, scheduler: ActionChunkScheduler, env_ids: EnvIds) -> tuple[Query, Any]:
        num_envs = batch_size_and_device(observation)[0]
        if num_envs != scheduler.num_envs:
            raise ObservationError(f"observation has {num_envs} envs first, expected num_envs={scheduler.num_envs}")
        if not self._connected:
            self.connect()
        query = Query(
            env_ids=torch.from_numpy(env_ids).to(scheduler.device, non_blocking=True),
            env_ids_host=env_ids,
            device=scheduler.device,
            num_envs=scheduler.num_envs,
            instructions=self._instructions_of(env_ids),
        )
        request = self.observation_translator.translate(observation, query)
        self.stats.queries += 1
        self.stats.env_requests += len(env_ids)
        return query, request

    def _infer(self, request: Any, query: Query) -> torch.Tensor:
        started = time.perf_counter()
        chunk = self.action_translator.translate(self.transport.infer(request), query)
        self.stats.latencies_s.append(time.perf_counter() - started)
        return chunk

    def _make_scheduler(self, num_envs: int, device: torch.device) -> ActionChunkScheduler:
        self.scheduler = ActionChunkScheduler(num_envs, device, **self._scheduler_options)
        if self._prefetch_steps:
            self._pending = PendingChunks(num_envs)
        if len(self._pending_pause):
            self.scheduler.pause(self._pending_pause)
        return self.scheduler

    # ------------------------------------------------------------------ resets, instructions

    def reset(self, env_ids: Sequence[int] | EnvIds | torch.Tensor | None = None) -> None:
        """Start new episodes for ``env_ids`` (``None``: all envs): their stored chunks are dropped
        and the server is told where the protocol has a reset."""
        self._check_open()
        ids = None if env_ids is None else _to_host_ids(env_ids)
        num_envs = self.scheduler.num_envs if self.scheduler is not None else self._num_envs_hint
        if ids is not None and len(ids) == num_envs:
            ids = None  # every env: the server may reset as a whole
        if self.scheduler is not None:
            self.scheduler.reset(ids)
        else:
            self._pending_pause = np.zeros(0, np.int64) if ids is None else np.setdiff1d(self._pending_pause, ids)
        if self._pending is not None:
            self._pending.cancel(ids)
        if ids is None or len(ids):
            if not self._connected:
                self.connect()
            if self._worker is None:
                self.transport.reset(ids)
            else:
                self._worker.call(lambda: self.transport.reset(ids))

    def pause(self, env_ids: Sequence[int] | EnvIds | torch.Tensor) -> None:
        """Stop querying ``env_ids``: they hold their last action until :meth:`reset` resumes them.

        For runners that mask out envs whose further episodes will not be counted, so that they
        cost no inference.
        """
        self._check_open()
        ids = _to_host_ids(env_ids)
        if self.scheduler is None:
            self._pending_pause = np.union1d(self._pending_pause, ids)
        else:
            self.scheduler.pause(ids)
        if self._pending is not None:
            self._pending.cancel(ids)

    def set_instruction(self, text: str, env_ids: Sequence[int] | EnvIds | torch.Tensor | None = None) -> None:
        """Set the task instruction sent with observations, for all envs or only ``env_ids``."""
        if env_ids is None:
            self._instruction = text
            self._instructions_per_env = None
            return
        num_envs = self.scheduler.num_envs if self.scheduler is not None else self._num_envs_hint
        if num_envs is None:
            raise ConfigError("set_instruction with env_ids needs num_envs: pass num_envs or call get_action first")
        if self._instructions_per_env is None:
            self._instructions_per_env = [self._instruction] * num_envs
        for env_id in _to_host_ids(env_ids).tolist():
            self._instructions_per_env[env_id] = text

    def _instructions_of(self, env_ids: EnvIds) -> tuple[str, ...]:
        if self._instructions_per_env is None:
            return (self._instruction,) * len(env_ids)
        return tuple(self._instructions_per_env[i] for i in env_ids.tolist())

    @property
    def instruction(self) -> str:
        """The instruction sent to envs without their own."""
        return self._instruction


def _to_host_ids(env_ids: Sequence[int] | EnvIds | torch.Tensor) -> EnvIds:
    if isinstance(env_ids, torch.Tensor):
        env_ids = env_ids.detach().to("cpu").numpy()
    ids = np.asarray(env_ids)
    if ids.dtype.kind not in "iu" and ids.size:
        raise ConfigError(f"env_ids: expected integer ids, got dtype {ids.dtype}")
    unique: EnvIds = np.unique(ids.astype(np.int64).reshape(-1))
    return unique


def load_policy(name: str, *, registry: PluginRegistry | None = None, **config: Any) -> Policy:
    """Build the adapter ``name`` with ``config`` and return its :class:`Policy`.

    ``config`` holds the adapter's options (see ``arena-adapters info NAME``), the policy options
    (:data:`POLICY_OPTIONS`), and optionally ``transport=``, ``observation_translator=`` or
    ``action_translator=`` naming registered parts that replace the adapter's own.

    Raises:
        UnknownAdapterError: no adapter or part of that name; the message lists the valid names.
        ConfigError: an unknown option, a missing required one or a value of the wrong type.
    """
    registry = registry or default_registry()
    adapter = registry.adapter(name)
    merged = {**adapter.defaults, **config}
    records = part_records(registry, adapter, merged)
    options = {k: v for k, v in merged.items() if k not in PART_ROLES}
    reject_unknown(options, declared_options(records), f"adapter {name!r}")
    policy_options = resolve_options(POLICY_OPTIONS, options, f"adapter {name!r}")
    parts = {
        role: record.factory(**resolve_options(record.options, options, f"{record.kind} {record.name!r}"))
        for role, record in records.items()
    }
    return Policy(
        name,
        parts["observation_translator"],
        parts["action_translator"],
        parts["transport"],
        **policy_options,
    )


def declared_options(records: Mapping[str, PartRecord]) -> dict[str, Option]:
    """Every option a policy of these parts accepts, by name: the policy options, then each part's
    (a name several parts declare is listed once, as first declared)."""
    declared = {option.name: option for option in POLICY_OPTIONS}
    for record in records.values():
        for option in record.options:
            declared.setdefault(option.name, option)
    return declared


def part_records(
    registry: PluginRegistry, adapter: AdapterRecord, choices: Mapping[str, Any]
) -> dict[str, PartRecord]:
    """The part records of ``adapter`` by role, with the swaps in ``choices`` (``transport=`` ...).

    Raises:
        UnknownAdapterError: a part is not registered.
        ConfigError: a swap is not a str, or the parts speak different protocols.
    """
    records: dict[str, PartRecord] = {}
    for role, record_type in PART_ROLES.items():
        part_name = choices.get(role, getattr(adapter, role))
        if not isinstance(part_name, str):
            raise ConfigError(f"option {role!r}: expected a registered part name (str), got {part_name!r}")
        records[role] = registry.part(record_type, part_name)
    protocol = records["transport"].protocol
    for role in ("observation_translator", "action_translator"):
        record = records[role]
        if ANY_PROTOCOL not in (protocol, record.protocol) and record.protocol != protocol:
            raise ConfigError(
                f"{record.kind} {record.name!r} speaks protocol {record.protocol!r}, but transport "
                f"{records['transport'].name!r} speaks {protocol!r}"
            )
    return records
