"""``arena-adapters eval``: evaluate a served policy in a vectorized environment.

    arena-adapters eval --adapter gr00t --endpoint tcp://127.0.0.1:5555 --env reach \\
        --num-envs 16 --num-episodes 64 [--execute-steps 8 ...adapter options]

Shows a progress bar on a terminal (log lines otherwise), prints the summary, and writes a JSON
report plus a PNG figure next to it. Ctrl-C stops cleanly, writes the partial report and exits 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from arena_adapters.cli.command import Command, parse_option_flags, positive_int
from arena_adapters.envs import environment_options, make_environment
from arena_adapters.errors import ConfigError
from arena_adapters.evaluation.adapter_options import adapter_options, parse_key_values, split_part_flags
from arena_adapters.evaluation.figure import MISSING_MATPLOTLIB, matplotlib_available
from arena_adapters.evaluation.progress import ProgressDisplay
from arena_adapters.evaluation.report import EvalResult
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
    parser.add_argument("--device", default="cpu", help="env device (default cpu)")
    parser.add_argument("--seed", type=int, default=None, help="the env's 'seed' option")
    parser.add_argument("--env-option", action="append", metavar="KEY=VALUE", help="an env option (repeatable)")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many env steps (>= 1)")
    add_output_arguments(parser)
    parser.epilog = ("Other flags are the adapter's options (see 'arena-adapters info NAME'), e.g. "
                     "--execute-steps 8 --instruction 'pick up the cup'; --transport/--observation-translator/"
                     "--action-translator swap in other registered parts.")


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
    env_options = parse_key_values(args.env_option, "--env-option")
    if args.seed is not None:
        if not any(option.name == "seed" for option in environment_options(args.env)):
            raise ConfigError(f"environment {args.env!r} has no 'seed' option")
        env_options["seed"] = args.seed
    env = make_environment(args.env, num_envs=args.num_envs, device=args.device, **env_options)
    info = {
        "adapter": args.adapter,
        "endpoint": args.endpoint,
        "environment": args.env,
        "env_options": env_options,
        "device": args.device,
        "adapter_options": {key: str(value) for key, value in masked(config).items()},
    }
    report = report_path_for(args, f"eval-{args.adapter}-{args.env}")
    try:
        with load_policy(args.adapter, num_envs=args.num_envs, **config) as policy:
            result = evaluate(
                policy,
                env,
                args.num_episodes,
                progress=progress_display(args.progress, f"{args.env}/{args.adapter}"),
                report_path=report,
                figure=not args.no_figure,
                info=info,
                max_steps=args.max_steps,
            )
    finally:
        env.close()
    return finish(result, not args.no_figure)


COMMAND = Command("eval", "evaluate a served policy in a vectorized environment", add_arguments, run,
                  takes_extra=True)
