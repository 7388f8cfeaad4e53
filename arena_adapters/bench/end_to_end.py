"""End to end: env steps/s of an eval loop against each reference server serving the ``null`` policy.

For each remote adapter (``gr00t``, ``openpi``, ``openvla``, those installed) and each size (1, 16,
64, 256, 1024 envs; 4096 too on a cuda device), the built-in ``reach`` env on ``--device`` (two
180x320 cameras, ``num_targets=1``, ``target_speed=0``, episodes of :data:`EPISODE_STEPS` steps
whose clocks are staggered at random, so envs reset at different steps) is stepped as
``evaluate()`` does (``get_action``, ``env.step``, ``reset`` of the finished envs) by:

- ``ours``: the adapter (its plugin's demo options), against the reference server in a process of
  its own (``python -m arena_adapters.envs.expert_server --policy null``: a constant chunk, zero work);
- ``local``: the in-process ``local`` adapter returning the same constant chunk (the limit);
- ``env alone``: the env stepped with a constant action, no policy (the ceiling of every column);
- ``Arena-style``: a client for the same server doing per step what Isaac Lab Arena's remote
  policies do (:mod:`arena_adapters.bench.arena_clients`): GR00T, ``gr00t_remote_closedloop``
  (all envs re-queried in one batch whenever any env needs a chunk, the upstream serialiser, the
  scheduler's per-step work and a ``reset`` round trip per reset); OpenPI, ``RemoteChunkReplayPolicy``
  (one request per env, one after another, per-env host copies and ``resize_with_pad``, the real
  ``openpi_client`` client); OpenVLA, the same loop with ``requests`` + ``json_numpy``.

The env, its observations and the actions live on the device; the clock is read after a device
synchronisation, so device -> host copies are inside every column. Up to 64 envs every column
runs twice (``Plan.rounds``), in alternating order (ours, local, env alone, Arena-style, then the
reverse), each time on a fresh env after warm-up steps; a column's figure is the mean of its rounds,
so load from other processes that comes and goes falls on every column alike.

The env's own step is in every column, so a ``vs Arena-style`` row also states what bounds its
ratio (:func:`against_arena`): the local adapter's ratio to the Arena-style client
(``limit_vs_arena``), a client's that cost nothing (``zero_cost_bound``: the Arena-style step over
the env alone's), and the part a client controls, its time per step beyond the env alone's,
Arena-style over ours (``cost_vs_arena``).

Time per query of ``ours``, split (microseconds; sums over the measured steps / queries):
``obs_translation`` (incl. device -> host), ``encode``, ``transfer`` (round trips minus the server's
time), ``server_decode``, ``server_policy``, ``server_encode``, ``client_decode``,
``action_translation``, ``scheduler`` (the rest of ``get_action``). Client parts are timed by wrapping
the policy's translators and transport methods on the benchmark's own instance (the library is not
instrumented). The reference servers do not report their time, so the server parts are the same
server functions (decode, null policy, encode) timed in this process on the last request's bytes,
times the requests per query (the server's own decode of a body: for openvla its route's). openpi
and openvla send their per-env requests from the calling thread and read the replies after, so
their parts are wall time; a transport whose per-env requests run on fan-out threads has its client
parts summed over the threads, which can exceed the wall time. ``floor`` is the bytes of a query
(requests and replies) over this machine's memory copy bandwidth (``np.copyto``, measured here).
For gr00t, ``wire_floor_s`` is a raw ZeroMQ round trip of the request's bytes to an echo process
(:mod:`arena_adapters.bench.wire_floor`): what ``transfer`` cannot go below over that socket.

On a cuda device gr00t (1024 and 4096 envs) and openvla (64 and 256 envs) are measured against
several server processes too (:data:`CUDA_REPLICAS`: one comma-separated ``endpoint``; each query
split over the replicas, sent concurrently), beside the local limit (and for openvla the Arena-style
client against one server): rows ``ADAPTER, N envs, R replicas vs local`` (``vs Arena-style``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

import arena_adapters as aa
from arena_adapters.bench.arena_clients import ARENA_BASELINES, arena_client
from arena_adapters.bench.rows import BenchSettings, Row, SectionSkipped
from arena_adapters.bench.timing import median_seconds, seconds
from arena_adapters.envs.reach import ReachEnv
from arena_adapters.envs.reach_geometry import TASK_DESCRIPTION
from arena_adapters.errors import AdapterError

ADAPTERS = ("gr00t", "openpi", "openvla")
EPISODE_STEPS = 48
LARGE_REQUEST_BYTES = 1 << 33
CLIENT_TIMEOUT_S = 300.0
PARTS = ("obs_translation", "encode", "transfer", "server_decode", "server_policy", "server_encode",
         "client_decode", "action_translation", "scheduler")
LOCAL_BASELINE = "local adapter, same constant chunk (the limit)"


@dataclass
class Timers:
    """Seconds summed by name, and the bytes and requests seen, while ``on``."""

    on: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    request_bytes: int = 0
    reply_bytes: int = 0
    requests: int = 0
    last_request: Any = None
    last_chunk: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    replica_requests: list[int] = field(default_factory=list)
    """Requests each replica answered in the last run (its warm-up steps included)."""

    def wrap(self, owner: Any, attribute: str, name: str, after: Callable[[Any], None] | None = None) -> None:
        """Replace ``owner.attribute`` (on this instance only) by a timed call of it."""
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = original(*args, **kwargs)
            if self.on:
                self.seconds[name] += time.perf_counter() - started
                if after is not None:
                    after(result)
            return result

        setattr(owner, attribute, timed)


@dataclass(frozen=True)
class Drive:
    """One measured eval loop."""

    seconds_per_step: float
    num_envs: int

    @property
    def env_steps_per_s(self) -> float:
        return self.num_envs / self.seconds_per_step


IMAGE_SIZE = (180, 320)
"""Camera image height and width (DROID's); ``--quick`` uses :data:`QUICK_IMAGE_SIZE`."""
QUICK_IMAGE_SIZE = (48, 64)


def make_env(num_envs: int, image_size: tuple[int, int] = IMAGE_SIZE, device: str = "cpu") -> ReachEnv:
    """The reach env of this benchmark: one static target, short episodes (no policy here grasps)."""
    return ReachEnv(num_envs=num_envs, device=device, seed=0, num_targets=1, target_speed=0.0,
                    max_episode_length=EPISODE_STEPS, image_height=image_size[0], image_width=image_size[1])


@dataclass(frozen=True)
class ReplicaRun:
    """An adapter measured against several server replicas too, at some sizes (rows ``ADAPTER, N
    envs, R replicas vs local``, and ``... vs Arena-style`` with ``against_arena``: the Arena-style
    client against one server, which its one-env-after-another requests could not spread)."""

    adapter: str
    servers: int
    sizes: tuple[int, ...]
    against_arena: bool = False


@dataclass(frozen=True)
class Plan:
    """Sizes and lengths of the measurements.

    ``warmup`` steps run before the clock starts. 12 covers the first refill of every env at step
    8 (the envs not reset by then refill together): its host buffers, hundreds of MB of pinned
    memory at 4096 envs on cuda, are allocated once per process, and a measured window that took
    that one-off cost put ours at 4096 envs 40 % below its steady state.
    """

    sizes: tuple[int, ...] = (1, 16, 64, 256, 1024)
    warmup: int = 12
    small_steps: int = 96
    large_steps: int = 16
    huge_steps: int = 8
    giant_steps: int = 8
    image_size: tuple[int, int] = IMAGE_SIZE
    servers_in_process: bool = False
    rounds: int = 2
    most_envs_in_rounds: int = 64
    replicas: tuple[ReplicaRun, ...] = ()

    def replicas_at(self, adapter: str, num_envs: int) -> ReplicaRun | None:
        """The replicas ``adapter`` is measured against too at ``num_envs``, if any."""
        return next((run for run in self.replicas if run.adapter == adapter and num_envs in run.sizes), None)

    def rounds_at(self, num_envs: int) -> int:
        """Rounds per column at ``num_envs``: ``rounds`` up to ``most_envs_in_rounds`` envs (short
        runs, which passing load skews most), one above (a run of many seconds averages it out)."""
        return self.rounds if num_envs <= self.most_envs_in_rounds else 1

    def steps(self, num_envs: int) -> int:
        """Measured steps at ``num_envs`` in one round (fewer for big batches: each step costs more);
        each column runs :meth:`rounds_at` of them, in alternating order, so load on the machine that
        comes and goes falls on every column alike. Keep a round a multiple of ``execute_steps`` (8):
        every env gets its first chunk at the first step, so until each has been reset once the envs
        that have not refill together every 8 steps, and another window would over- or under-count them."""
        total = (self.small_steps if num_envs <= 16 else self.large_steps if num_envs <= 256
                 else self.huge_steps if num_envs <= 1024 else self.giant_steps)
        return max(1, -(-total // self.rounds_at(num_envs)))


FULL = Plan()
"""The full plan on cpu: 4096 envs are left out there (a step of 4096 envs' two 180x320 cameras and the
Arena-style GR00T client's 1.4 GB request per step would take most of the section's 10 minutes)."""
CUDA_ONLY_SIZE = 4096
CUDA_REPLICAS = (ReplicaRun("gr00t", 8, (1024, CUDA_ONLY_SIZE)),
                 ReplicaRun("openvla", 4, (64, 256), against_arena=True))
"""One GR00T server is one ZeroMQ socket, whose raw round trip (the wire floor) caps a large batch's
queries: against 8 servers the policy splits each query into 8 requests, sent concurrently. One
OpenVLA server spends about 1.2 ms of CPU on each env's request, one after another: against 4 the
policy deals a query's per-env requests out to them."""
FULL_CUDA = Plan(sizes=(*FULL.sizes, CUDA_ONLY_SIZE), large_steps=32, huge_steps=24, replicas=CUDA_REPLICAS)
"""The full plan on a cuda device: 4096 envs included; 32 measured steps at 64 and 256 envs and 24 at
1024 (a step of the local adapter at 1024 envs takes a few milliseconds: 8 are too few to time it
steadily), 8 at 4096 (where the Arena-style GR00T client's step takes seconds); and the
:data:`CUDA_REPLICAS` runs too (a server process each: a machine of 16 or more cores)."""
QUICK = Plan(sizes=(1, 16), warmup=2, small_steps=12, image_size=QUICK_IMAGE_SIZE, servers_in_process=True, rounds=1,
             replicas=(ReplicaRun("gr00t", 2, (16,)), ReplicaRun("openvla", 2, (16,), against_arena=True)))


def plan_for(settings: BenchSettings) -> Plan:
    """:data:`QUICK` with ``--quick``, else :data:`FULL_CUDA` on a cuda device, else :data:`FULL`."""
    if settings.quick:
        return QUICK
    return FULL_CUDA if torch.device(settings.device).type == "cuda" else FULL


def synchronize(device: str) -> None:
    """Wait for the device's queued work (cuda), so that a clock read after it counts it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def drive(step: Callable[[Any], torch.Tensor], reset: Callable[[NDArray[np.int64]], None], num_envs: int, plan: Plan,
          on_start: Callable[[], None] = lambda: None, device: str = "cpu") -> Drive:
    """Step a fresh env on ``device`` as ``evaluate()`` does, episodes out of phase; time ``plan.steps``
    after ``plan.warmup`` (the device synchronised before each clock read)."""
    env = make_env(num_envs, plan.image_size, device)
    warmup, steps = plan.warmup, plan.steps(num_envs)
    with torch.inference_mode():
        obs, _ = env.reset()
        clocks = torch.Generator().manual_seed(1)
        env.episode_length_buf = torch.randint(0, EPISODE_STEPS, (num_envs,), generator=clocks).to(env.device)
        started = time.perf_counter()
        for index in range(warmup + steps):
            if index == warmup:
                on_start()
                synchronize(device)
                started = time.perf_counter()
            actions = step(obs)
            obs, _, terminated, truncated, _ = env.step(actions)
            done = np.flatnonzero((terminated | truncated).cpu().numpy())
            if len(done):
                reset(done)
        synchronize(device)
        return Drive((time.perf_counter() - started) / steps, num_envs)


def env_alone(action: torch.Tensor, num_envs: int, plan: Plan, device: str) -> Drive:
    """The env stepped with a constant action and no policy at all: the ceiling of every column."""
    actions = action.reshape(1, -1).to(device).expand(num_envs, -1).contiguous()
    return drive(lambda obs: actions, lambda done: None, num_envs, plan, device=device)


class ConstantChunk:
    """The ``local`` adapter's policy: a fixed chunk for every queried env (zero work)."""

    def __init__(self, chunk: torch.Tensor) -> None:
        self.chunk = chunk

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        k = observation["policy"]["joint_pos"].shape[0]
        return self.chunk.expand(k, -1, -1)


@contextmanager
def _servers(adapter: str, in_process: bool, count: int = 1) -> Iterator[tuple[list[str], Any]]:
    """``count`` reference servers of the adapter serving the null policy (their endpoints, and the
    served expert's record): processes of their own, or (``--quick``, to save their start-up) threads
    of this one."""
    from arena_adapters.envs.expert_server import served_expert, start_expert_server
    from arena_adapters.evaluation.server_process import ServerProcess

    record = served_expert(adapter)
    with ExitStack() as stack:
        endpoints = []
        for _ in range(count):
            if in_process:
                server = start_expert_server(adapter, policy="null")
                stack.callback(server.stop)
                endpoints.append(server.endpoint)
            else:
                options = _gr00t_server_options(record) if adapter == "gr00t" else None
                process = stack.enter_context(ServerProcess.for_expert(adapter, policy="null", server_options=options))
                endpoints.append(process.endpoint)
        yield endpoints, record


def _instrument(policy: aa.Policy, timers: Timers) -> None:
    transport = policy.transport

    def on_encode(payload: Any) -> None:
        data = getattr(payload, "body", payload)
        timers.request_bytes += len(data)
        timers.requests += 1
        timers.last_request = data

    def on_reply(data: Any) -> None:
        timers.reply_bytes += len(data)

    def on_chunk(chunk: torch.Tensor) -> None:
        timers.last_chunk = chunk

    timers.wrap(policy, "get_action", "get_action")
    timers.wrap(policy.observation_translator, "translate", "obs_translation")
    timers.wrap(policy.action_translator, "translate", "action_translation", on_chunk)
    timers.wrap(transport, "infer", "infer")
    timers.wrap(transport, "encode", "encode", on_encode)
    timers.wrap(transport, "exchange", "exchange", on_reply)
    if hasattr(transport, "_receive"):  # a kit transport: a threadless fan-out sends and receives apart
        timers.wrap(transport, "_send", "exchange")
        timers.wrap(transport, "_receive", "exchange", on_reply)
    timers.wrap(transport, "decode", "client_decode")


def _gr00t_server_options(record: Any) -> dict[str, Any]:
    """The gr00t reference server's options here: a query of all 1024 (or 4096) envs (354 MB, 1.4 GB)
    is over its default request limit."""
    return {**dict(record.server_options), "max_message_bytes": LARGE_REQUEST_BYTES,
            "max_array_bytes": LARGE_REQUEST_BYTES}


def _server_parts(adapter: str, record: Any, request: bytes) -> dict[str, float]:
    """Seconds of the reference server's decode, null policy and encode on ``request``, in process."""
    repeat = 3 if len(request) > 1 << 20 else 20
    if adapter == "gr00t":
        from arena_adapters_gr00t import codec
        from arena_adapters_gr00t.server import ReferenceServer as Gr00tServer

        g = Gr00tServer("null", "127.0.0.1", 0, **_gr00t_server_options(record))

        def g_decode() -> Any:
            return codec.decode(request, writable=g.writable_arrays, limits=g.limits, arrays=(g.array_encoding,))

        message = g_decode()
        result = g.policy.get_action(**message.get("data", {}))
        return {"server_decode": median_seconds(g_decode, repeat, 3),
                "server_policy": median_seconds(lambda: g.policy.get_action(**message.get("data", {})), repeat, 3),
                "server_encode": median_seconds(lambda: codec.encode(result, arrays=g.array_encoding), repeat, 3)}
    if adapter == "openpi":
        from arena_adapters_openpi.codec import encode as openpi_encode
        from arena_adapters_openpi.server import ReferenceServer as OpenpiServer
        from arena_adapters_openpi.server import policy_function

        o = OpenpiServer("null", "127.0.0.1", 0, **dict(record.server_options))
        infer = policy_function(o.policy)
        observation = o.decode_request(request)
        action = infer(observation)
        return {"server_decode": median_seconds(lambda: o.decode_request(request), repeat, 3),
                "server_policy": median_seconds(lambda: infer(observation), repeat, 3),
                "server_encode": median_seconds(lambda: openpi_encode(action), repeat, 3)}
    from arena_adapters_openvla import codec as vla_codec
    from arena_adapters_openvla.server import ServerStats, create_app, handle_act, resolve_policy

    options = dict(record.server_options)
    null = resolve_policy("null", **{k: options[k] for k in ("variant", "chunk_size", "action_dim") if k in options})
    route = create_app(null)  # its ``decode`` is what the server runs on a body

    def inner(outer: Any) -> Any:  # the OFT form's inner text, which the handler decodes
        return vla_codec.loads(outer["encoded"]) if "encoded" in outer else outer

    outer = route.decode(request)
    payload = inner(outer)
    stats = ServerStats()
    outer_decode_s = median_seconds(lambda: route.decode(request), repeat, 3)
    inner_decode_s = median_seconds(lambda: inner(outer), repeat, 3)
    policy_s = median_seconds(lambda: null(payload), repeat, 3)
    handler_s = median_seconds(lambda: handle_act(outer, null, stats), repeat, 3)  # inner decode, policy, encode
    return {"server_decode": outer_decode_s + inner_decode_s, "server_policy": policy_s,
            "server_encode": max(handler_s - inner_decode_s - policy_s, 0.0)}


def copy_bandwidth(nbytes: int) -> float:
    """Bytes per second of ``np.copyto`` of an ``nbytes`` buffer on this machine."""
    source = np.ones(nbytes, dtype=np.uint8)
    target = np.empty_like(source)
    return float(source.nbytes / median_seconds(lambda: np.copyto(target, source), 3, 5))


def _drive_ours(adapter: str, endpoint: str, options: dict[str, Any], num_envs: int, plan: Plan, device: str,
                timers: Timers) -> tuple[Drive, int]:
    """The adapter's run, its parts timed into ``timers`` (measured steps only); and the number of
    queries it made while measured."""
    with aa.load_policy(adapter, endpoint=endpoint, **options) as ours:
        _instrument(ours, timers)
        queries_before = [0]

        def start() -> None:
            timers.on = True
            queries_before[0] = ours.stats.queries

        try:
            run = drive(ours.get_action, ours.reset, num_envs, plan, start, device)
        finally:
            timers.on = False
        timers.replica_requests = [stats.requests for stats in ours.stats.replicas]
        return run, ours.stats.queries - queries_before[0]


COLUMNS = ("ours", "local", "env alone", "Arena-style")


def _measure_size(adapter: str, endpoint: str, options: dict[str, Any], num_envs: int, plan: Plan, device: str,
                  columns: tuple[str, ...] = COLUMNS, rounds: int | None = None, arena_endpoint: str | None = None
                  ) -> tuple[dict[str, Drive], Timers, int, int, str | None]:
    """``columns`` (ours first, so that the local adapter replays the chunk ours got) at one size,
    ``rounds`` times (default ``plan.rounds_at(num_envs)``) in alternating order; the Arena-style
    client against ``arena_endpoint`` (default ``endpoint``). Returns each column's mean run, ours'
    timers and queries, the Arena-style client's requests, and why that client could not run (or
    None)."""
    execute_steps = int(options.get("execute_steps", 8))
    timers = Timers()
    runs: dict[str, list[Drive]] = defaultdict(list)
    queries = arena_requests = 0
    arena_skipped: str | None = None
    chunk = torch.zeros(0)
    for round_index in range(plan.rounds_at(num_envs) if rounds is None else rounds):
        for column in columns if round_index % 2 == 0 else columns[::-1]:
            if column == "ours":
                run, made = _drive_ours(adapter, endpoint, options, num_envs, plan, device, timers)
                queries += made
                chunk = timers.last_chunk[:1].clone().to(device)
            elif column == "local":
                with aa.load_policy("local", policy=ConstantChunk(chunk), execute_steps=execute_steps) as local:
                    run = drive(local.get_action, local.reset, num_envs, plan, device=device)
            elif column == "env alone":
                run = env_alone(chunk[0, 0], num_envs, plan, device)
            else:
                arena = _arena_drive(adapter, arena_endpoint or endpoint, num_envs, plan, execute_steps, device)
                if isinstance(arena, str):
                    arena_skipped = arena
                    continue
                run, sent = arena
                arena_requests += sent
            runs[column].append(run)
    mean = {column: Drive(sum(r.seconds_per_step for r in done) / len(done), num_envs)
            for column, done in runs.items()}
    return mean, timers, queries, arena_requests, arena_skipped


def _measure_adapter(adapter: str, plan: Plan, bandwidth: float, device: str = "cpu") -> list[Row]:
    """Rows of ``adapter`` at every size of ``plan``: ours, the local limit, the env alone and the
    Arena-style client (see :func:`_measure_size`), against one server; and where
    :meth:`Plan.replicas_at` says so, ours against several (:func:`_measure_replicas`)."""
    rows = []
    count = max([run.servers for run in plan.replicas if run.adapter == adapter], default=1)
    with _servers(adapter, plan.servers_in_process, count) as (endpoints, record), _wire_echo(adapter) as echo:
        endpoint = endpoints[0]
        options = {**dict(record.client_options), "timeout": CLIENT_TIMEOUT_S}
        for num_envs in plan.sizes:
            runs, timers, queries, arena_requests, arena_skipped = _measure_size(
                adapter, endpoint, options, num_envs, plan, device)
            ours_run, local_run = runs["ours"], runs["local"]
            breakdown = _breakdown(adapter, record, timers, max(queries, 1))
            bytes_per_query = (timers.request_bytes + timers.reply_bytes) / max(queries, 1)
            query_s = timers.seconds["get_action"] / max(queries, 1)
            steps = plan.steps(num_envs) * plan.rounds_at(num_envs)
            common = {"unit": "seconds per env step", "env_steps_per_s": round(ours_run.env_steps_per_s, 1),
                      "requests_per_step": round(timers.requests / steps, 2)}
            name = f"{adapter}, {num_envs} envs"
            rows.append(Row("end_to_end", f"{name} vs local", ours_run.seconds_per_step / num_envs,
                            local_run.seconds_per_step / num_envs, LOCAL_BASELINE,
                            {**common, "local_env_steps_per_s": round(local_run.env_steps_per_s, 1),
                             "env_alone_env_steps_per_s": round(runs["env alone"].env_steps_per_s, 1),
                             **({"arena_skipped": arena_skipped} if arena_skipped else {})}))
            if "Arena-style" in runs:
                arena_run = runs["Arena-style"]
                rows.append(Row("end_to_end", f"{name} vs Arena-style", ours_run.seconds_per_step / num_envs,
                                arena_run.seconds_per_step / num_envs, ARENA_BASELINES[adapter],
                                {**common, "arena_env_steps_per_s": round(arena_run.env_steps_per_s, 1),
                                 "arena_requests_per_step": round(arena_requests / steps, 2),
                                 **against_arena(ours_run, arena_run, local_run, runs["env alone"])}))
            split = ", ".join(f"{part} {seconds(breakdown[part])}" for part in PARTS)
            wire = {}
            if echo is not None and timers.requests:
                wire = {"wire_floor_s": echo.round_trip_s(timers.request_bytes // timers.requests)}
                split += f"; wire floor (raw ZeroMQ round trip of the request's bytes) {seconds(wire['wire_floor_s'])}"
            rows.append(Row("end_to_end", f"{name}, one query", query_s, bytes_per_query / bandwidth,
                            f"physical floor (bytes / copy bandwidth); per query: {split}",
                            {"unit": "seconds per query (get_action with a query, ours)",
                             "queries": queries, "requests_per_query": round(timers.requests / max(queries, 1), 2),
                             "bytes_per_query": int(bytes_per_query),
                             **{f"{part}_s": breakdown[part] for part in PARTS}, **wire}))
            replicated = plan.replicas_at(adapter, num_envs)
            if replicated is not None:
                rows.extend(_measure_replicas(replicated, endpoints[:replicated.servers], options, num_envs, plan,
                                              device))
    return rows


def against_arena(ours: Drive, arena: Drive, local: Drive, env_alone: Drive) -> dict[str, float]:
    """What bounds ``ours`` against the Arena-style client at one size: the env's own step is in both
    columns, so no client's ratio can exceed ``zero_cost_bound`` (the Arena-style step over the env
    alone's), and ``limit_vs_arena`` is where the in-process local adapter gets. ``cost_vs_arena`` is
    the part a client controls: the Arena-style client's time per step beyond the env alone's, over
    ours' (left out when ours measured no slower than the env alone: machine noise)."""
    env_s = env_alone.seconds_per_step
    ours_cost = ours.seconds_per_step - env_s
    figures = {"limit_vs_arena": round(arena.seconds_per_step / local.seconds_per_step, 2),
               "zero_cost_bound": round(arena.seconds_per_step / env_s, 2)}
    if ours_cost > 0:
        figures["cost_vs_arena"] = round((arena.seconds_per_step - env_s) / ours_cost, 2)
    return figures


def _measure_replicas(replicated: ReplicaRun, endpoints: list[str], options: dict[str, Any], num_envs: int,
                      plan: Plan, device: str) -> list[Row]:
    """Ours against ``len(endpoints)`` server replicas (one policy, each query split over them) and
    the local limit (and, ``against_arena``, the Arena-style client against the first server),
    alternating for ``plan.rounds`` rounds at any size, after one unmeasured run of ours: the first
    such run in a process is slower all through (31,000-38,000 against 45,000-55,000 env steps/s
    for gr00t at 1024 envs on an H100), a cost a long eval pays once."""
    adapter, endpoint = replicated.adapter, ",".join(endpoints)
    columns = ("ours", "local", "env alone", "Arena-style") if replicated.against_arena else ("ours", "local")
    _drive_ours(adapter, endpoint, options, num_envs, plan, device, Timers())
    runs, timers, _, arena_requests, _ = _measure_size(adapter, endpoint, options, num_envs, plan, device, columns,
                                                       plan.rounds, arena_endpoint=endpoints[0])
    ours_s, local_s = runs["ours"].seconds_per_step, runs["local"].seconds_per_step
    name = f"{adapter}, {num_envs} envs, {len(endpoints)} replicas"
    common = {"unit": "seconds per env step", "env_steps_per_s": round(num_envs / ours_s, 1),
              "replicas": len(endpoints), "requests_per_replica": timers.replica_requests}
    rows = [Row("end_to_end", f"{name} vs local", ours_s / num_envs, local_s / num_envs,
                f"{LOCAL_BASELINE}; ours against {len(endpoints)} servers",
                {**common, "local_env_steps_per_s": round(num_envs / local_s, 1)})]
    if "Arena-style" in runs:
        arena_s = runs["Arena-style"].seconds_per_step
        rows.append(Row("end_to_end", f"{name} vs Arena-style", ours_s / num_envs, arena_s / num_envs,
                        f"{ARENA_BASELINES[adapter]} against one server; ours against {len(endpoints)}",
                        {**common, "arena_env_steps_per_s": round(num_envs / arena_s, 1),
                         "arena_requests_per_step": round(arena_requests / (plan.steps(num_envs) * plan.rounds), 2),
                         **against_arena(runs["ours"], runs["Arena-style"], runs["local"], runs["env alone"])}))
    return rows


def _arena_drive(adapter: str, endpoint: str, num_envs: int, plan: Plan, execute_steps: int, device: str
                 ) -> tuple[Drive, int] | str:
    """The Arena-style client's run and its requests while measured; or why it could not run."""
    try:
        client = arena_client(adapter, endpoint, num_envs, device, execute_steps, TASK_DESCRIPTION)
    except ImportError as exc:
        return f"the Arena-style client needs {exc.name or exc}, which is not installed"
    requests_before = [0]

    def start() -> None:
        requests_before[0] = client.requests

    try:
        run = drive(client.step, client.reset, num_envs, plan, start, device)
        return run, client.requests - requests_before[0]
    finally:
        client.close()


@contextmanager
def _wire_echo(adapter: str) -> Iterator[Any]:
    """For gr00t, an echo process to time raw ZeroMQ round trips against (the wire floor,
    :mod:`arena_adapters.bench.wire_floor`); None for the other adapters."""
    if adapter != "gr00t":
        yield None
        return
    from arena_adapters.bench.wire_floor import ZmqEcho

    with ZmqEcho() as echo:
        yield echo


def _breakdown(adapter: str, record: Any, timers: Timers, queries: int) -> dict[str, float]:
    """Seconds per query of each part (see the module docstring)."""
    s = timers.seconds
    per_request = _server_parts(adapter, record, timers.last_request) if timers.last_request is not None else {}
    requests_per_query = timers.requests / queries
    server = {part: spent * requests_per_query for part, spent in per_request.items()}
    exchange = s["exchange"] / queries
    parts = {
        "obs_translation": s["obs_translation"] / queries,
        "encode": s["encode"] / queries,
        "transfer": max(exchange - sum(server.values()), 0.0),
        **server,
        "client_decode": s["client_decode"] / queries,
        "action_translation": s["action_translation"] / queries,
        "scheduler": max(s["get_action"] - s["obs_translation"] - s["infer"] - s["action_translation"], 0.0) / queries,
    }
    return {part: parts.get(part, 0.0) for part in PARTS}


def run(settings: BenchSettings) -> list[Row]:
    """End-to-end rows: per adapter and size, ours vs the local limit and vs the Arena-style client
    (every installed adapter of :data:`ADAPTERS`, or those of ``settings.adapters``)."""
    wanted = settings.adapters or ADAPTERS
    available = []
    for adapter in wanted:
        try:
            from arena_adapters.envs.expert_server import served_expert

            served_expert(adapter)
            available.append(adapter)
        except AdapterError:
            continue
    if not available:
        raise SectionSkipped(f"none of the adapters {list(wanted)} is installed with a reference server")
    if torch.device(settings.device).type == "cuda" and not torch.cuda.is_available():
        raise SectionSkipped(f"device {settings.device!r}: cuda is not available on this machine")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = plan_for(settings)
        copy_bytes = (4 if settings.quick else 64) << 20
        bandwidth = copy_bandwidth(copy_bytes)
        rows = []
        for adapter in available:
            rows.extend(_measure_adapter(adapter, plan, bandwidth, settings.device))
        copied = f"memory copy bandwidth (np.copyto, {copy_bytes >> 20} MiB)"
        note = "the floor's denominator; sizes " + ", ".join(map(str, plan.sizes))
        if plan is FULL:
            note += f"; {CUDA_ONLY_SIZE} envs on cuda only (on cpu the section would run well over 10 minutes)"
        rows.append(Row("end_to_end", copied, 1 / bandwidth, 1 / bandwidth, note,
                        {"unit": "seconds per byte", "GB_per_s": round(bandwidth / 1e9, 2),
                         "sizes": list(plan.sizes)}))
        return rows
    finally:
        torch.set_num_threads(threads)

