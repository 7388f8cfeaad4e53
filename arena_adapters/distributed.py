"""One process per GPU (torchrun, Isaac Lab Arena's multi-GPU runs): each rank's device and replica.

torchrun (and ``torch.distributed.launch``, Ray Train, SLURM wrappers that follow it) tells each
process who it is through ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. :func:`rank_defaults` turns
that into policy options, so the same command line serves every rank:

- ``device``: ``cuda:LOCAL_RANK`` when CUDA is available and no device was given (on a CPU-only
  machine the device is left alone);
- ``endpoint``: of a replica list (``"tcp://a:5555,tcp://b:5555"`` or a list), the replica
  ``RANK mod len(endpoints)``, so ranks spread evenly over the servers. The ``replica`` option
  overrides it: an index into the list, ``"rank"`` (the default under torchrun) or ``"all"`` (keep the
  whole list and let the adapter's replica support spread the envs).

Without those variables nothing changes, except that an explicit ``replica`` index or ``"all"`` still
applies. Typical use::

    torchrun --nproc-per-node 4 -m arena_adapters eval --adapter gr00t \\
        --endpoint tcp://gpu-a:5555,tcp://gpu-b:5555 --num-episodes 1000 ...

Each rank runs its share of the 1000 episodes (:func:`episode_share`) on its own GPU against its
own replica and writes its own report (``report.rank1.json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arena_adapters.errors import ConfigError

REPLICA_OPTION = "replica"
"""The option that picks a replica out of an endpoint list (see the module docstring)."""
RANK_REPLICA = "rank"
ALL_REPLICAS = "all"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class RankInfo:
    """Who this process is among the processes of one distributed job.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        local_rank: rank on this machine (the GPU index by convention).
        world_size: number of processes in the job.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @staticmethod
    def from_environ(environ: Mapping[str, str] | None = None) -> RankInfo | None:
        """The rank from ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` (``None`` when none is set).

        A missing ``LOCAL_RANK`` defaults to ``RANK``, a missing ``RANK`` to ``LOCAL_RANK``, a missing
        ``WORLD_SIZE`` to ``RANK + 1``.

        Raises:
            ConfigError: a variable that is not a non-negative integer, or ``RANK >= WORLD_SIZE``.
        """
        env = os.environ if environ is None else environ
        values = {name: _read_int(env, name) for name in RANK_VARIABLES}
        if all(value is None for value in values.values()):
            return None
        rank = values["RANK"] if values["RANK"] is not None else values["LOCAL_RANK"] or 0
        local_rank = values["LOCAL_RANK"] if values["LOCAL_RANK"] is not None else rank
        world_size = values["WORLD_SIZE"] if values["WORLD_SIZE"] is not None else rank + 1
        if world_size < 1 or rank >= world_size:
            raise ConfigError(f"environment: expected 0 <= RANK < WORLD_SIZE, got RANK={rank} WORLD_SIZE={world_size}")
        return RankInfo(rank, local_rank, world_size)


def _read_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}: expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"environment variable {name}: expected a non-negative integer, got {value}")
    return value


def split_endpoints(endpoint: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (blanks dropped, order kept).

    Raises:
        ConfigError: an item that is not a string.
    """
    items = endpoint.split(",") if isinstance(endpoint, str) else list(endpoint)
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"option 'endpoint': expected a URL or a list of URLs, got item {item!r}")
    return [item.strip() for item in items if item.strip()]


def pick_replica(endpoint: str | Sequence[str], index: int) -> str:
    """Replica ``index mod len(endpoints)`` of an endpoint list (one endpoint: itself).

    Raises:
        ConfigError: the list is empty.
    """
    endpoints = split_endpoints(endpoint)
    if not endpoints:
        raise ConfigError(f"option 'endpoint': no endpoint in {endpoint!r}")
    return endpoints[index % len(endpoints)]


def rank_defaults(
    options: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    cuda_available: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Policy options with this rank's defaults filled in (see the module docstring).

    ``options`` are :func:`~arena_adapters.load_policy` keyword arguments; the ``replica`` option is
    consumed here (it is not passed on). Applied by ``load_policy``, ``arena-adapters eval`` and the
    Isaac Lab Arena policy class.

    Args:
        options: the policy's options as given.
        environ: the environment (default ``os.environ``).
        cuda_available: whether CUDA can be used (default ``torch.cuda.is_available``).

    Returns:
        A new dict: ``device`` set to ``cuda:LOCAL_RANK`` if it was not given, running under a
        launcher, with CUDA; ``endpoint`` narrowed to this rank's replica.

    Raises:
        ConfigError: a bad ``replica`` value, or bad rank variables.
    """
    resolved = dict(options)
    choice = resolved.pop(REPLICA_OPTION, None)
    rank = RankInfo.from_environ(environ)
    if rank is not None and resolved.get("device") is None:
        device = rank_device(rank, cuda_available)
        if device is not None:
            resolved["device"] = device
    endpoint = resolved.get("endpoint")
    if endpoint is None:
        if choice not in (None, RANK_REPLICA, ALL_REPLICAS):
            raise ConfigError(f"option {REPLICA_OPTION!r}: given ({choice!r}) but no 'endpoint' list to pick from")
        return resolved
    index = replica_index(choice, rank)
    if index is not None:
        resolved["endpoint"] = pick_replica(endpoint, index)
    return resolved


def replica_index(choice: Any, rank: RankInfo | None) -> int | None:
    """Which replica of a list to use for a ``replica`` option value (``None``: keep the list).

    Raises:
        ConfigError: not ``"rank"``, ``"all"`` or a non-negative integer.
    """
    if choice is None or choice == RANK_REPLICA:
        return None if rank is None else rank.rank
    if choice == ALL_REPLICAS:
        return None
    if isinstance(choice, bool):
        choice = str(choice)
    try:
        index = int(choice)
    except (TypeError, ValueError):
        index = -1
    if index < 0:
        raise ConfigError(
            f"option {REPLICA_OPTION!r}: expected {RANK_REPLICA!r}, {ALL_REPLICAS!r} or a replica index >= 0, "
            f"got {choice!r}"
        )
    return index


def rank_device(rank: RankInfo, cuda_available: Callable[[], bool] | None = None) -> str | None:
    """``cuda:LOCAL_RANK`` when CUDA is available, else ``None`` (keep the default device)."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available
    return f"cuda:{rank.local_rank}" if cuda_available() else None


def episode_share(num_episodes: int, rank: RankInfo) -> tuple[int, int]:
    """``(first, count)``: the contiguous block of episode ids this rank runs out of ``num_episodes``.

    The first ``num_episodes % world_size`` ranks run one more; a rank may get none when there are
    fewer episodes than ranks.
    """
    base, extra = divmod(num_episodes, rank.world_size)
    count = base + (1 if rank.rank < extra else 0)
    first = rank.rank * base + min(rank.rank, extra)
    return first, count


def rank_path(path: str | os.PathLike[str], rank: RankInfo) -> str:
    """``report.json`` -> ``report.rank3.json`` (a path of one rank's output)."""
    text = os.fspath(path)
    root, ext = os.path.splitext(text)
    return f"{root}.rank{rank.rank}{ext}"
