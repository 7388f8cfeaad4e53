"""``arena-adapters demo``: the whole chain end to end on this machine, no GPU, no model.

Starts the adapter's reference server in a background process serving the scripted expert of the
built-in ``reach`` environment through the real protocol, evaluates it with 16 envs for 64 episodes
(progress bar, then the summary: success rate and latency), and stops the server, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

import torch

from arena_adapters.cli.command import Command, positive_int
from arena_adapters.cli.eval_command import add_output_arguments, finish, progress_display, report_path_for
from arena_adapters.envs.reach_serving import SERVED_EXPERTS
from arena_adapters.evaluation.demo import run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", default="gr00t", choices=tuple(SERVED_EXPERTS),
                        help="protocol to serve the expert through (default gr00t; local: in-process, no server)")
    parser.add_argument("--num-envs", type=positive_int, default=16, help="parallel envs (default 16)")
    parser.add_argument("--num-episodes", type=positive_int, default=64, help="episodes (default 64)")
    parser.add_argument("--device", default="cpu", help="env device (default cpu)")
    add_output_arguments(parser)
    parser.set_defaults(threads=1)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    in_process = SERVED_EXPERTS[args.adapter].in_process
    where = "in this process" if in_process else "its reference server in a background process"
    print(f"demo: the reach expert served through {args.adapter} ({where}); "
          f"{args.num_envs} envs, {args.num_episodes} episodes", file=sys.stderr, flush=True)
    result = run_demo(
        args.adapter,
        num_envs=args.num_envs,
        num_episodes=args.num_episodes,
        device=args.device,
        progress=progress_display(args.progress, f"reach/{args.adapter}"),
        report_path=report_path_for(args, f"demo-{args.adapter}"),
        figure=not args.no_figure,
    )
    return finish(result, not args.no_figure)


COMMAND = Command("demo", "run the embedded end-to-end demo (reference server + scripted expert)", add_arguments, run)
