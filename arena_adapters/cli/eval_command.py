"""``arena-adapters eval``: evaluate a served policy in a vectorized environment.

    arena-adapters eval --adapter gr00t --endpoint tcp://127.0.0.1:5555 --env reach \\
        --num-envs 16 --num-episodes 64 [--execute-steps 8 ...adapter options]

Shows a progress bar on a terminal (log lines otherwise), prints the summary, and writes a JSON
report plus a PNG figure next to it. Ctrl-C stops cleanly, writes the partial report and exits 130.

Under torchrun (``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` set) each rank runs its share of the
episodes (global ids ``first..first+count-1``, see :func:`arena_adapters.distributed.episode_share`)
on ``cuda:LOCAL_RANK`` (with CUDA, unless ``--device`` is given), against replica ``RANK mod n`` of
``--endpoint A,B,...`` (``--replica`` overrides), with the env seed ``seed + RANK``, and writes its
own report ``NAME.rankR.json``. ``--ray [ADDRESS]`` shards the episodes over Ray actors instead
(:mod:`arena_adapters.integrations.ray_eval`) and writes one merged report.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from arena_adapters.cli.command import Command, parse_option_flags, positive_int
from arena_adapters.distributed import (
    RankInfo,
    episode_share,
    rank_defaults,
    rank_device,
    rank_path,
)
from arena_adapters.envs import environment_options, make_environment
from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.adapter_options import adapter_options, parse_key_values, split_part_flags
from arena_adapters.evaluation.figure import MISSING_MATPLOTLIB, matplotlib_available
from arena_adapters.evaluation.policy_stats import plain_stats
from arena_adapters.evaluation.progress import ProgressDisplay
from arena_adapters.evaluation.report import EvalResult, write_json
from arena_adapters.evaluation.runner import evaluate
from arena_adapters.options import masked
from arena_adapters.policy import load_policy

PROGRESS_CHOICES = ("auto", "bar", "log", "none")
EXIT_INTERRUPTED = 130
_SET_BY_EVAL = ("num_envs", "device", "endpoint")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``eval`` and ``demo``: report, figure, progress, threads."""
    parser.add_argument("--report", type=Path, default=None,
                        help="JSON report path; the PNG figure goes next to it (default: reports/<name>-<time>.json)")
    parser.add_argument("--no-report", action="store_true", help="write no report and no figure")
    parser.add_argument("--no-figure", action="store_true", help="write the JSON report only")
    parser.add_argument("--progress", choices=PROGRESS_CHOICES, default="auto",
                        help="a bar (terminal), log lines, or nothing; auto: bar on a terminal, else log")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads of this process")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, help="adapter name (see 'arena-adapters list')")
    parser.add_argument("--endpoint", help="policy server address (the adapter's 'endpoint' option)")
    parser.add_argument("--env", default="reach", help="environment name (default reach, the built-in one)")
    parser.add_argument("--num-envs", type=positive_int, default=16, help="parallel envs (default 16)")
    parser.add_argument("--num-episodes", type=positive_int, default=64,
                        help="episodes to count, exactly (default 64)")
    parser.add_argument("--device", default=None,
                        help="env device (default cpu; cuda:LOCAL_RANK under torchrun when CUDA is available)")
    parser.add_argument("--seed", type=int, default=None, help="the env's 'seed' option")
    parser.add_argument("--env-option", action="append", metavar="KEY=VALUE", help="an env option (repeatable)")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many env steps (>= 1)")
    parser.add_argument("--replica", default=None, metavar="INDEX|rank|all",
                        help="which replica of an --endpoint list to use (default under torchrun: RANK mod n)")
    add_ray_arguments(parser)
    add_output_arguments(parser)
    parser.epilog = ("Other flags are the adapter's options (see 'arena-adapters info NAME'), e.g. "
                     "--execute-steps 8 --instruction 'pick up the cup'; --transport/--observation-translator/"
                     "--action-translator swap in other registered parts.")


RAY_FLAGS = ("shards", "gpus_per_shard", "cpus_per_shard", "on_shard_error", "max_shard_restarts", "serve_replicas")


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and the sharding flags (see :mod:`arena_adapters.integrations.ray_eval`)."""
    group = parser.add_argument_group("sharded evaluation on Ray (pip install 'arena-adapters[ray]')")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="shard the episodes over Ray actors: a new local instance (no ADDRESS), "
                            "'auto' (the running cluster) or ray://HOST:PORT")
    group.add_argument("--shards", type=int, default=None,
                       help="shard actors (default: one per replica); shard i uses replica i mod n")
    group.add_argument("--gpus-per-shard", type=float, default=None,
                       help="GPUs per shard (default 1 with --device cuda, else 0)")
    group.add_argument("--cpus-per-shard", type=float, default=None, help="CPUs per shard (default 1)")
    group.add_argument("--on-shard-error", choices=("retry", "stop"), default=None,
                       help="retry: restart a failed shard and re-run its unfinished episodes (default); "
                            "stop: stop the run")
    group.add_argument("--max-shard-restarts", type=int, default=None, help="restarts per shard (default 3)")
    group.add_argument("--serve-replicas", type=int, default=None,
                       help="start N reference servers of the adapter (serving the reach expert) as Ray actors")


def progress_display(choice: str, label: str) -> ProgressDisplay | None:
    """The display for a ``--progress`` choice (on stderr)."""
    if choice == "none":
        return None
    return ProgressDisplay(sys.stderr, label=label, tty={"bar": True, "log": False}.get(choice))


def report_path_for(args: argparse.Namespace, name: str) -> Path | None:
    """``--report``, else ``reports/<name>-<time>.json``; ``None`` with ``--no-report``."""
    if args.no_report:
        return None
    return args.report or Path("reports") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"


def finish(result: EvalResult, figure_wanted: bool) -> int:
    """Print the summary; return the exit code (130 when interrupted)."""
    print(result.summary(), flush=True)
    if figure_wanted and result.report_path is not None and result.figure_path is None and not matplotlib_available():
        print(f"note: {MISSING_MATPLOTLIB}", file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.ray is None:
        given = [flag for flag in RAY_FLAGS if getattr(args, flag, None) is not None]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --ray")
    if args.threads:
        torch.set_num_threads(args.threads)
    parts, rest = split_part_flags(extra)
    declared = adapter_options(args.adapter, parts)
    owner = f"eval --adapter {args.adapter}"
    config = {**parts, **parse_option_flags(rest, declared, owner, skip=_SET_BY_EVAL)}
    if args.endpoint is not None:
        if not any(option.name == "endpoint" for option in declared):
            raise ConfigError(f"adapter {args.adapter!r} takes no endpoint")
        config["endpoint"] = args.endpoint
    if args.replica is not None:
        config["replica"] = args.replica
    env_options = parse_key_values(args.env_option, "--env-option")
    if args.seed is not None:
        if not any(option.name == "seed" for option in environment_options(args.env)):
            raise ConfigError(f"environment {args.env!r} has no 'seed' option")
        env_options["seed"] = args.seed
    if args.ray is not None:
        from arena_adapters.integrations.ray_command import run_on_ray

        report = report_path_for(args, f"eval-{args.adapter}-{args.env}-ray")
        return finish(run_on_ray(args, config, env_options, report), not args.no_figure)
    rank = RankInfo.from_environ()
    device = args.device or (rank_device(rank) if rank is not None else None) or "cpu"
    config = rank_defaults({**config, "device": device})
    num_episodes, first_episode = args.num_episodes, 0
    label = f"{args.env}/{args.adapter}"
    report = report_path_for(args, f"eval-{args.adapter}-{args.env}")
    if rank is not None and rank.world_size > 1:
        first_episode, num_episodes = episode_share(args.num_episodes, rank)
        if num_episodes == 0:
            print(f"rank {rank.rank}: no episodes ({args.num_episodes} episodes over {rank.world_size} ranks)")
            return 0
        env_options = _rank_seed(args.env, env_options, rank)
        report = None if report is None else Path(rank_path(report, rank))
        label += f" rank {rank.rank}"
    env = make_environment(args.env, num_envs=args.num_envs, device=device, **env_options)
    info: dict[str, Any] = {
        "adapter": args.adapter,
        "endpoint": config.get("endpoint", args.endpoint),
        "environment": args.env,
        "env_options": env_options,
        "device": device,
        "adapter_options": {key: str(value) for key, value in masked(config).items()},
    }
    if rank is not None:
        info["rank"] = {"rank": rank.rank, "local_rank": rank.local_rank, "world_size": rank.world_size,
                        "first_episode": first_episode, "total_episodes": args.num_episodes}
    try:
        with load_policy(args.adapter, num_envs=args.num_envs, **config) as policy:
            result = evaluate(
                policy,
                env,
                num_episodes,
                progress=progress_display(args.progress, label),
                report_path=report,
                figure=not args.no_figure,
                info=info,
                max_steps=args.max_steps,
            )
            result.info["policy_stats"] = plain_stats(policy.stats)
    finally:
        env.close()
    if first_episode:
        result.episodes = [dataclasses.replace(e, index=e.index + first_episode) for e in result.episodes]
    if result.report_path is not None:
        write_json(result, result.report_path)  # again, with the policy's stats and global episode ids
    return finish(result, not args.no_figure)


def _rank_seed(env: str, env_options: dict[str, Any], rank: RankInfo) -> dict[str, Any]:
    """``seed + RANK`` (from ``--seed`` or the env's default), so that ranks run different episodes."""
    option = next((option for option in environment_options(env) if option.name == "seed"), None)
    seed = env_options.get("seed", option.default if option is not None else None)
    if option is None or seed is None:
        return env_options
    return {**env_options, "seed": int(seed) + rank.rank}


COMMAND = Command("eval", "evaluate a served policy in a vectorized environment", add_arguments, run,
                  takes_extra=True)
