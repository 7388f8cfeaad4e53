"""``arena-adapters demo``: the whole chain end to end on this machine, no GPU, no model.

Starts the adapter's reference server in a background process serving the scripted expert of the
built-in ``reach`` environment through the real protocol, evaluates it with 16 envs for 32 episodes
(progress bar, then the summary: success rate, latency, requests sent against the ideal and an
Arena-style client), and stops the server, also on Ctrl-C. Any adapter whose plugin registers a
served expert works (``--adapter NAME``); ``--policy null`` serves a constant zero-work chunk instead,
to measure the adapter alone.
"""

from __future__ import annotations

import argparse
import sys

import torch

from arena_adapters.cli.command import Command, positive_int
from arena_adapters.cli.eval_command import add_output_arguments, finish, progress_display, report_path_for
from arena_adapters.envs.expert_server import EXPERT_POLICY, POLICIES
from arena_adapters.evaluation.adapter_options import parse_key_values
from arena_adapters.evaluation.demo import DEMO_NUM_ENVS, DEMO_NUM_EPISODES, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", default="gr00t",
                        help="adapter to serve the expert through: gr00t (default), openpi, openvla, local "
                        "(in-process, no server) or any adapter whose plugin registers a served expert")
    parser.add_argument("--num-envs", type=positive_int, default=DEMO_NUM_ENVS,
                        help=f"parallel envs (default {DEMO_NUM_ENVS})")
    parser.add_argument("--num-episodes", type=positive_int, default=DEMO_NUM_EPISODES,
                        help=f"episodes (default {DEMO_NUM_EPISODES})")
    parser.add_argument("--device", default="cpu", help="env device (default cpu)")
    parser.add_argument("--policy", default=EXPERT_POLICY, choices=POLICIES,
                        help="what the server serves: the scripted expert (default) or a constant zero-work chunk")
    parser.add_argument("--execute-steps", type=positive_int, default=None,
                        help="actions executed per chunk (default: the adapter's served-expert setting)")
    parser.add_argument("--env-option", action="append", metavar="KEY=VALUE",
                        help="a reach env option, e.g. num_targets=1 (repeatable)")
    add_output_arguments(parser)
    parser.set_defaults(threads=1)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    served = "the reach expert" if args.policy == EXPERT_POLICY else "the null policy"
    print(f"demo: {served} served through {args.adapter}; {args.num_envs} envs, {args.num_episodes} episodes",
          file=sys.stderr, flush=True)
    client_options = {} if args.execute_steps is None else {"execute_steps": args.execute_steps}
    result = run_demo(
        args.adapter,
        num_envs=args.num_envs,
        num_episodes=args.num_episodes,
        device=args.device,
        policy=args.policy,
        env_options=parse_key_values(args.env_option, "--env-option"),
        client_options=client_options,
        progress=progress_display(args.progress, f"reach/{args.adapter}"),
        report_path=report_path_for(args, f"demo-{args.adapter}"),
        figure=not args.no_figure,
    )
    return finish(result, not args.no_figure)


COMMAND = Command("demo", "run the embedded end-to-end demo (reference server + scripted expert)", add_arguments, run)
