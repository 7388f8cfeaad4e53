"""Evaluate a served policy in a vectorized environment: episodes, success, latency, reports.

Python API::

    import arena_adapters as aa
    from arena_adapters.envs import make_environment
    from arena_adapters.evaluation import evaluate

    env = make_environment("reach", num_envs=16)
    with aa.load_policy("gr00t", endpoint="tcp://127.0.0.1:5555", execute_steps=8) as policy:
        result = evaluate(policy, env, num_episodes=64, progress=True, report_path="eval.json")
    print(result.summary())          # success rate, episode lengths, latency p50/p95/p99, throughput

The same from the shell: ``arena-adapters eval --adapter gr00t --endpoint tcp://127.0.0.1:5555
--env reach --num-envs 16 --num-episodes 64 --execute-steps 8``.
"""

from __future__ import annotations

from arena_adapters.evaluation.episodes import Episode, EpisodeLedger
from arena_adapters.evaluation.figure import write_figure
from arena_adapters.evaluation.progress import EvalProgress, ProgressDisplay
from arena_adapters.evaluation.report import EvalResult, read_json, write_json
from arena_adapters.evaluation.runner import evaluate, figure_path_for
from arena_adapters.evaluation.statistics import LatencySummary, LengthSummary

__all__ = [
    "Episode",
    "EpisodeLedger",
    "EvalProgress",
    "EvalResult",
    "LatencySummary",
    "LengthSummary",
    "ProgressDisplay",
    "evaluate",
    "figure_path_for",
    "read_json",
    "write_figure",
    "write_json",
]
