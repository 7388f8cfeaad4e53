"""The policy object a runner uses: parts composed around the shared action scheduler."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

import numpy as np
import torch

from arena_adapters.distributed import rank_defaults
from arena_adapters.errors import (
    ActionError,
    AdapterError,
    ConfigError,
    ObservationError,
    TransportError,
)
from arena_adapters.layouts import ActionLayout, action_layout_of
from arena_adapters.observations import batch_size_and_device, first_tensor
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
from arena_adapters.records import (
    ANY_PROTOCOL,
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    PartRecord,
    TransportRecord,
)
from arena_adapters.scheduler import AGGREGATES, STRATEGIES, ActionChunkScheduler, Requests, validate_schedule
from arena_adapters.transport import DEADLINES, Deadline, ReplicaSet, ReplicaStats, WatchdogTransport, split_replicas
from arena_adapters.transport.threads import DaemonPool, fan_out
from arena_adapters.worker import HostBuffers, TransportWorker, detach_from

logger = logging.getLogger(__name__)

WAIT_SLACK_S = 5.0
"""Added to the transport's timeout when waiting for a call on the transport worker."""

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
    Option("prefetch_window", int, 0, "a request ahead also carries the envs that reach prefetch_steps within "
           "this many further steps: fewer, larger requests when episodes run out of phase (0: off)", minimum=0),
    Option("aggregate", str, "replace", "how a new chunk merges with the rest of the old one over the steps "
           "both cover: replace, average (aggregate_weight), linear, exponential (aggregate_decay); "
           "replay/lockstep", choices=AGGREGATES),
    Option("aggregate_weight", float, 0.5, "the new chunk's weight with aggregate=average, in [0, 1]",
           minimum=0.0, check=lambda w: w <= 1.0, check_text="a value <= 1"),
    Option("aggregate_decay", float, 0.5, "rate r of aggregate=exponential: the new chunk's weight at the "
           "i-th shared step is 1 - exp(-r * (i + 1))", above=0.0),
    Option("allow_nonfinite_actions", bool, False, "pass NaN/inf actions to the env instead of raising ActionError"),
    Option("replica_retry_after", float, 10.0, "seconds a failed replica stays out before a health check lets it "
           "back", above=0),
    Option("failover_resend", bool, True, "resend a request whose replica failed at the connection level to "
           "another replica (logged and counted in stats)"),
)
"""Options every adapter takes; they configure the policy and its scheduler."""

PART_ROLES: dict[str, type[PartRecord]] = {
    "transport": TransportRecord,
    "observation_translator": ObservationTranslatorRecord,
    "action_translator": ActionTranslatorRecord,
}
"""Option names that swap one part of an adapter for another registered part."""


LATENCY_SAMPLES = 100_000
"""How many of the most recent inference latencies :class:`InferenceStats` keeps."""


@dataclass
class InferenceStats:
    """Counters of the inferences a policy made.

    Attributes:
        queries: inference round trips (one per step that needed any chunk).
        env_requests: env observations sent (sum of queried envs over all queries).
        steps: control steps served.
        latencies_s: wall time of each inference: send, server, receive, action translation
            (measured where it runs: on the transport worker for background queries); the most
            recent :data:`LATENCY_SAMPLES` only, so a long run's memory stays flat.
        failovers: requests resent to another replica after theirs failed.
        replicas: per-replica counters (one entry per endpoint).
    """

    queries: int = 0
    env_requests: int = 0
    steps: int = 0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    latency_count: int = 0
    failovers: int = 0
    replicas: list[ReplicaStats] = field(default_factory=list)

    def add_latency(self, seconds: float) -> None:
        """Record one inference's wall time."""
        self.latencies_s.append(seconds)
        self.latency_count += 1

    def latencies_since(self, count: int) -> list[float]:
        """The latencies recorded after the first ``count`` (of :attr:`latency_count`), as far as kept."""
        new = min(self.latency_count - count, len(self.latencies_s))
        return list(self.latencies_s)[len(self.latencies_s) - new:] if new > 0 else []


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
        transport: InferenceTransport | ReplicaSet,
        *,
        num_envs: int | None = None,
        device: str | torch.device | None = None,
        execute_steps: int | None = None,
        strategy: str = "replay",
        ensemble_decay: float = 0.01,
        instruction: str | None = None,
        prefetch_steps: int = 0,
        prefetch_window: int = 0,
        aggregate: str = "replace",
        aggregate_weight: float = 0.5,
        aggregate_decay: float = 0.5,
        allow_nonfinite_actions: bool = False,
        replica_retry_after: float = 10.0,
        failover_resend: bool = True,
    ) -> None:
        self.name = name
        self.observation_translator = observation_translator
        self.action_translator = action_translator
        self.replicas = (
            transport if isinstance(transport, ReplicaSet)
            else ReplicaSet([transport], [str(getattr(transport, "endpoint", name))], retry_after=replica_retry_after)
        )
        self.stats = InferenceStats(replicas=self.replicas.stats)
        self._allow_nonfinite = allow_nonfinite_actions
        self._failover_resend = failover_resend
        self._per_env_requests = all(getattr(t, "per_env_requests", False) for t in self.replicas.transports)
        self._replica_threads = DaemonPool(len(self.replicas), f"arena-adapters-{name}-replicas") if len(
            self.replicas) > 1 else None
        self._scheduler_options: dict[str, Any] = {
            "execute_steps": execute_steps,
            "strategy": strategy,
            "ensemble_decay": ensemble_decay,
            "aggregate": aggregate,
            "aggregate_weight": aggregate_weight,
            "aggregate_decay": aggregate_decay,
            "prefetch_steps": prefetch_steps,
            "prefetch_window": prefetch_window,
        }
        self._instruction = instruction or ""
        self._instructions_per_env: list[str] | None = None
        self._connected = False
        self._closed = False
        self._num_envs_hint = num_envs
        self._pending_pause: EnvIds = np.zeros(0, dtype=np.int64)
        self._device_hint = None if device is None else torch.device(device)
        self.scheduler: ActionChunkScheduler | None = None
        validate_schedule(strategy, execute_steps, aggregate, prefetch_steps, prefetch_window)
        self._worker = TransportWorker(name) if prefetch_steps else None
        self._request_buffers = HostBuffers() if prefetch_steps else None
        if num_envs is not None and device is not None:
            self._make_scheduler(num_envs, torch.device(device))

    # --------------------------------------------------------------------------- lifecycle

    @property
    def transport(self) -> InferenceTransport:
        """The transport of the first replica (the only one, unless several endpoints were given)."""
        return self.replicas.transports[0]

    @property
    def action_layout(self) -> ActionLayout | None:
        """What the policy's actions mean, as its action translator declares (``None``: undeclared)."""
        return action_layout_of(self.action_translator)

    @property
    def timeout(self) -> float:
        """The budget of one inference, in seconds (the transport's)."""
        return float(getattr(self.transport, "timeout", 30.0))

    def connect(self) -> None:
        """Connect the transport(s) and let the translators read server metadata. Idempotent.

        With several replicas, it succeeds when at least one connects (the others are taken out).
        """
        self._check_open()
        if self._connected:
            return
        errors: list[AdapterError] = []
        connected: InferenceTransport | None = None
        for index, transport in enumerate(self.replicas.transports):
            try:
                transport.connect(Deadline.after(self.timeout))
            except AdapterError as error:
                errors.append(self._with_context(error, index, "connect"))
                self.replicas.take_out(index, str(error))
                continue
            connected = connected or transport
        if connected is None:
            raise errors[0]
        for translator in (self.observation_translator, self.action_translator):
            if has_on_connect(translator):
                try:
                    translator.on_connect(connected)
                except AdapterError as error:
                    raise error.add_context(adapter=self.name, request="reading server metadata") from None
        self._connected = True

    def close(self) -> None:
        """Abort requests in flight and release every socket and thread. Final, prompt, idempotent."""
        if not self._closed:
            self._closed = True
            if self._worker is not None:
                self._worker.close()
            if self._replica_threads is not None:
                self._replica_threads.close()
            for transport in self.replicas.transports:
                transport.close()

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
        if self._worker is not None:
            scheduler.collect(self._wait_bound())
        requests = scheduler.requests()
        if len(requests.now):
            scheduler.deliver(requests, self._query(observation, scheduler, requests))
        elif len(requests.ahead):
            self._query_ahead(observation, scheduler, requests.ahead)
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

    def _query(self, observation: Observation, scheduler: ActionChunkScheduler, requests: Requests) -> torch.Tensor:
        query, outgoing = self._request(observation, scheduler, requests.env_ids)
        if self._worker is None:
            return self._infer(outgoing, query)
        return self._worker.call(lambda: self._infer(outgoing, query), self._wait_bound())

    def _query_ahead(self, observation: Observation, scheduler: ActionChunkScheduler, env_ids: EnvIds) -> None:
        assert self._worker is not None
        query, outgoing = self._request(observation, scheduler, env_ids)
        outgoing = detach_from(outgoing, observation, self._request_buffers)
        scheduler.expect(env_ids, self._worker.submit(lambda: self._infer(outgoing, query)))

    def _wait_bound(self) -> float:
        """Seconds to wait for a call on the transport worker: each call queued before it, and
        it, may take its deadline (the transport's timeout, once per replica on failover)."""
        assert self._worker is not None
        per_call = self.timeout * len(self.replicas) + 1.0
        return per_call * (self._worker.backlog + 1) + WAIT_SLACK_S

    def _request(
        self, observation: Observation, scheduler: ActionChunkScheduler, env_ids: EnvIds
    ) -> tuple[Query, list[Outgoing]]:
        """The query for ``env_ids`` and its wire requests, one per replica group."""
        if first_tensor(observation) is not None:  # none left: the translator names the missing keys
            num_envs = batch_size_and_device(observation)[0]
            if num_envs != scheduler.num_envs:
                raise ObservationError(
                    f"observation has {num_envs} envs first, expected num_envs={scheduler.num_envs}"
                )
        if not self._connected:
            self.connect()
        query = self._make_query(scheduler, env_ids)
        groups = self.replicas.route(env_ids, scheduler.num_envs)
        if len(groups) == 1:
            outgoing = [(groups[0][0], query, self._translate_observation(observation, query))]
        else:
            outgoing = self._split(observation, query, [(r, self._make_query(scheduler, ids)) for r, ids in groups])
        self.stats.queries += 1
        self.stats.env_requests += len(env_ids)
        return query, outgoing

    def _split(self, observation: Observation, query: Query, parts: list[tuple[int, Query]]) -> list[Outgoing]:
        """The requests of ``query`` for its replica groups ``parts``. Where every replica takes
        one message per env (``per_env_requests``), the observation is translated once and its
        per-env messages are dealt out; otherwise each group is translated on its own."""
        if self._per_env_requests:
            messages = self._translate_observation(observation, query)
            if isinstance(messages, list) and len(messages) == query.size:
                return [(replica, part, [messages[i] for i in np.searchsorted(query.env_ids_host, part.env_ids_host)])
                        for replica, part in parts]
        return [(replica, part, self._translate_observation(observation, part)) for replica, part in parts]

    def _make_query(self, scheduler: ActionChunkScheduler, env_ids: EnvIds) -> Query:
        return Query(
            env_ids=torch.from_numpy(env_ids).to(scheduler.device, non_blocking=True),
            env_ids_host=env_ids,
            device=scheduler.device,
            num_envs=scheduler.num_envs,
            instructions=self._instructions_of(env_ids),
        )

    def _translate_observation(self, observation: Observation, query: Query) -> Any:
        try:
            return self.observation_translator.translate(observation, query)
        except AdapterError as error:
            raise error.add_context(adapter=self.name, request=_describe(query)) from None
        except Exception as exc:
            raise ObservationError(
                f"the observation translator failed: {type(exc).__name__}: {exc}",
                adapter=self.name, request=_describe(query),
            ) from exc

    def _infer(self, outgoing: list[Outgoing], query: Query) -> torch.Tensor:
        """Send the requests of one query (to their replicas, concurrently) and return its chunk."""
        started = time.perf_counter()
        if len(outgoing) == 1:
            chunks = [self._send(*outgoing[0])]
        elif all(isinstance(request, list) and getattr(self.replicas.transports[replica], "sends_apart", False)
                 for replica, _, request in outgoing):
            chunks = self._send_apart(outgoing)
        else:
            assert self._replica_threads is not None
            budget = self.timeout * len(self.replicas) + 1.0  # each resend has a deadline of its own
            chunks = fan_out(self._replica_threads, [partial(self._send, *o) for o in outgoing],
                             Deadline.after(budget), f"adapter {self.name!r} replicas")
        chunk = chunks[0] if len(chunks) == 1 else _concatenate(chunks, self.name)
        self.stats.add_latency(time.perf_counter() - started)
        return chunk

    def _send_apart(self, outgoing: list[Outgoing]) -> list[torch.Tensor]:
        """The replica groups' per-env requests all sent from this thread (``send_each``), then
        every group's replies read back: the replicas work at once, with no thread hand-offs. A
        group whose replica failed at the connection level is resent to another once every group
        was read (their connections are free again by then)."""
        started: list[tuple[Callable[[], Any], Callable[[], None], float]] = []
        reads: list[_Read] = []
        try:
            for replica, _, request in outgoing:
                started.append(self._start(replica, request))
            for collect, _, _ in started:
                reads.append(_Read.of(collect))
                if reads[-1].fatal:
                    break
        finally:
            for _, drop, _ in started[len(reads):]:
                drop()  # not read back (a group failed for good): their requests are dropped
        for (replica, query, request), read in zip(outgoing, reads, strict=False):
            if read.fatal:
                self._send(replica, query, request, first_reply=read)  # raises its error, with its context
        return [self._send(replica, query, request, first_reply=read, began=began)
                for (replica, query, request), read, (_, _, began) in zip(outgoing, reads, started, strict=True)]

    def _start(self, replica: int, request: list[Any]) -> tuple[Callable[[], Any], Callable[[], None], float]:
        """``request`` sent on ``replica``: how to read its replies, how to drop it, when it began. A
        failure to send is raised by the reading, where :meth:`_send` handles it as any other."""
        began = time.perf_counter()
        try:
            pending = self.replicas.transports[replica].send_each(  # type: ignore[attr-defined]
                request, Deadline.after(self.timeout), "inference")
        except Exception as exc:
            return _Read(error=exc), _nothing, began
        return pending.collect, pending.abort, began

    def _send(self, replica: int, query: Query, request: Any, first_reply: Callable[[], Any] | None = None,
              began: float | None = None) -> torch.Tensor:
        """One request on ``replica`` (or its reply from ``first_reply``, when it is in flight
        already); on a connection-level failure, resent once per other live replica (when
        ``failover_resend``)."""
        tried = {replica}
        while True:
            transport = self.replicas.transports[replica]
            began = time.perf_counter() if began is None else began
            try:
                if first_reply is not None:
                    reply, first_reply = first_reply(), None
                else:
                    reply = transport.infer(request, Deadline.after(self.timeout))
            except TransportError as error:
                first_reply, began = None, None
                self._with_context(error, replica, _describe(query))
                self.replicas.take_out(replica, error.message)
                other = self.replicas.next_live(replica) if self._failover_resend else None
                if other is None or other in tried:
                    raise error from None
                self.stats.failovers += 1
                logger.warning("adapter %r: resending %s to replica %s after: %s", self.name, _describe(query),
                               self.replicas.stats[other].endpoint, error)
                replica = other
                tried.add(other)
                continue
            except AdapterError as error:
                raise self._with_context(error, replica, _describe(query)) from None
            except Exception as exc:  # a transport that broke its contract: still a typed error
                raise self._with_context(
                    TransportError(f"the transport raised {type(exc).__name__}: {exc}"), replica, _describe(query)
                ) from exc
            self.replicas.record(replica, query.size, time.perf_counter() - began)
            return self._translate_actions(reply, query, replica)

    def _translate_actions(self, reply: Any, query: Query, replica: int) -> torch.Tensor:
        try:
            chunk = self.action_translator.translate(reply, query)
        except AdapterError as error:
            raise self._with_context(error, replica, _describe(query)) from None
        except Exception as exc:
            raise self._with_context(
                ActionError(f"the action translator failed: {type(exc).__name__}: {exc}"), replica, _describe(query)
            ) from exc
        if not self._allow_nonfinite:
            _check_finite(chunk, query, self._with_context, replica)
        return chunk

    def _with_context(self, error: AdapterError, replica: int, request: str) -> AdapterError:
        return error.add_context(adapter=self.name, endpoint=self.replicas.stats[replica].endpoint, request=request)

    def _make_scheduler(self, num_envs: int, device: torch.device) -> ActionChunkScheduler:
        self.scheduler = ActionChunkScheduler(num_envs, device, **self._scheduler_options)
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
        if ids is None or len(ids):
            if not self._connected:
                self.connect()
            if self._worker is None:
                self._reset_servers(ids)
            else:
                self._worker.call(lambda: self._reset_servers(ids), self._wait_bound())

    def _reset_servers(self, ids: EnvIds | None) -> None:
        for index, transport in enumerate(self.replicas.transports):
            if not self.replicas.stats[index].live:
                continue
            try:
                transport.reset(ids, Deadline.after(self.timeout))
            except AdapterError as error:
                raise self._with_context(error, index, "reset") from None

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


Outgoing = tuple[int, Query, Any]
"""One wire request of a query: ``(replica index, the query of its envs, the request)``."""


def _describe(query: Query) -> str:
    ids = query.env_ids_host
    shown = ids.tolist() if len(ids) <= 8 else "[" + ", ".join(map(str, ids[:4].tolist())) + f", ..., {ids[-1]}]"
    return f"inference for {query.size} env{'s' if query.size != 1 else ''} {shown}"


def _nothing() -> None:
    pass


@dataclass
class _Read:
    """The outcome of reading one replica group's replies: called, returns them or raises the error."""

    replies: Any = None
    error: Exception | None = None

    @classmethod
    def of(cls, read: Callable[[], Any]) -> _Read:
        try:
            return cls(replies=read())
        except Exception as exc:
            return cls(error=exc)

    @property
    def fatal(self) -> bool:
        """A failure that no other replica can mend (not at the connection level)."""
        return self.error is not None and not isinstance(self.error, TransportError)

    def __call__(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.replies


def _concatenate(chunks: Sequence[torch.Tensor], adapter: str) -> torch.Tensor:
    shapes = {tuple(chunk.shape[1:]) for chunk in chunks}
    if len(shapes) != 1:
        raise ActionError(f"replicas of adapter {adapter!r} answered chunks of different shapes {sorted(shapes)}: "
                          "do they serve the same policy?", adapter=adapter)
    return torch.cat(list(chunks))


def _check_finite(chunk: torch.Tensor, query: Query, with_context: Any, replica: int) -> None:
    """Raise :class:`ActionError` naming the env ids and action dims of NaN or infinite actions."""
    if not chunk.is_floating_point():
        return
    finite = torch.isfinite(chunk)
    if bool(finite.all()):
        return
    bad = ~finite
    envs = query.env_ids_host[bad.flatten(1).any(dim=1).cpu().numpy()]
    dims = torch.nonzero(bad.flatten(0, -2).any(dim=0)).flatten().tolist()
    shown = envs.tolist()[:16]
    raise with_context(ActionError(
        f"the server's actions hold NaN or infinity for env ids {shown}{'...' if len(envs) > 16 else ''} in "
        f"action dims {dims}; they were not passed to the env (option allow_nonfinite_actions=True passes them)"
    ), replica, _describe(query))


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
    merged = rank_defaults({**adapter.defaults, **config})  # torchrun ranks: device and replica
    records = part_records(registry, adapter, merged)
    options = {k: v for k, v in merged.items() if k not in PART_ROLES}
    reject_unknown(options, declared_options(records), f"adapter {name!r}")
    policy_options = resolve_options(POLICY_OPTIONS, options, f"adapter {name!r}")
    parts = {
        role: record.factory(**resolve_options(record.options, options, f"{record.kind} {record.name!r}"))
        for role, record in records.items() if role != "transport"
    }
    transports = build_transports(records["transport"], options)  # type: ignore[arg-type]
    return Policy(
        name,
        parts["observation_translator"],
        parts["action_translator"],
        transports,
        **policy_options,
    )


def build_transports(record: TransportRecord, options: Mapping[str, Any]) -> ReplicaSet:
    """One transport per replica endpoint of ``options`` (a list, or comma-separated addresses).

    A transport whose record does not declare the ``"deadlines"`` capability is wrapped in a
    :class:`~arena_adapters.transport.WatchdogTransport`, so its calls keep their deadlines too.
    """
    owner = f"{record.kind} {record.name!r}"
    declares_endpoint = any(option.name == "endpoint" for option in record.options)
    endpoints: list[str | None] = [None]
    if declares_endpoint and options.get("endpoint") is not None:
        endpoints = list(split_replicas(options["endpoint"]))
    transports: list[InferenceTransport] = []
    try:
        for endpoint in endpoints:
            given = dict(options) if endpoint is None else {**options, "endpoint": endpoint}
            transport = record.factory(**resolve_options(record.options, given, owner))
            if DEADLINES not in record.capabilities:
                transport = WatchdogTransport(transport, float(getattr(transport, "timeout", 30.0)), record.name)
            transports.append(transport)
    except BaseException:
        for transport in transports:
            transport.close()
        raise
    shown = [
        str(getattr(transport, "endpoint", endpoint or record.name))
        for transport, endpoint in zip(transports, endpoints, strict=True)
    ]
    retry_after = float(options.get("replica_retry_after", 10.0))
    return ReplicaSet(transports, shown, retry_after=retry_after)


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
