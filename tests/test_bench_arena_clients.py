"""The end-to-end benchmark's Arena-style clients against the real reference servers (null policy):
the requests they send step by step follow Isaac Lab Arena's policies, and their actions are the
ones our adapter gets from the same server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import arena_adapters as aa
from arena_adapters.bench.arena_clients import ArenaGr00tClient, arena_client
from arena_adapters.bench.end_to_end import FULL, FULL_CUDA, QUICK, QUICK_IMAGE_SIZE, make_env, plan_for, run
from arena_adapters.bench.rows import BenchSettings, SectionSkipped
from arena_adapters.envs.expert_server import served_expert, start_expert_server
from arena_adapters.envs.reach_geometry import TASK_DESCRIPTION

NUM_ENVS = 3
EXECUTE_STEPS = 2


@pytest.fixture(params=["gr00t", "openpi", "openvla"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, dict[str, Any]]]:
    adapter = request.param
    pytest.importorskip({"gr00t": "zmq", "openpi": "openpi_client", "openvla": "json_numpy"}[adapter])
    server = start_expert_server(adapter, policy="null")
    try:
        yield adapter, server.endpoint, dict(served_expert(adapter).client_options)
    finally:
        server.stop()


def _observation() -> dict[str, Any]:
    env = make_env(NUM_ENVS, QUICK_IMAGE_SIZE)
    obs, _ = env.reset()
    return obs


def test_requests_follow_arena_and_actions_match_ours(served: tuple[str, str, dict[str, Any]]) -> None:
    adapter, endpoint, options = served
    obs = _observation()
    client = arena_client(adapter, endpoint, NUM_ENVS, "cpu", EXECUTE_STEPS, TASK_DESCRIPTION)
    try:
        sent = []
        actions = []
        for step in range(5):
            if step == 3:
                before = client.requests
                client.reset(np.array([1]))
                reset_requests = client.requests - before
            before = client.requests
            actions.append(client.step(obs))
            sent.append(client.requests - before)
    finally:
        client.close()
    if adapter == "gr00t":
        assert isinstance(client, ArenaGr00tClient)
        # one batch for all envs whenever any env is due; a reset is a round trip to the server; only
        # the due envs take the new chunk: env 1 alone at step 4, then envs 0 and 2 at step 5
        assert sent == [1, 0, 1, 1, 1] and reset_requests == 1 and client.fetches == 4
    else:
        # one request per env whose chunk is exhausted (or was reset), one after another
        assert sent == [3, 0, 3, 1, 2] and reset_requests == 0
    for action in actions:
        assert action.shape == (NUM_ENVS, 8) and action.dtype == torch.float32
    with aa.load_policy(adapter, endpoint=endpoint, **{**options, "execute_steps": EXECUTE_STEPS}) as ours:
        expected = ours.get_action(obs)
    torch.testing.assert_close(actions[0], expected.to(torch.float32))


def test_plans_and_devices() -> None:
    assert plan_for(BenchSettings(quick=True, device="cuda")) is QUICK
    assert plan_for(BenchSettings()) is FULL and 64 in FULL.sizes and 4096 not in FULL.sizes
    assert plan_for(BenchSettings(device="cuda:0")) is FULL_CUDA and {64, 4096} <= set(FULL_CUDA.sizes)
    if not torch.cuda.is_available():
        with pytest.raises(SectionSkipped, match="cuda is not available"):
            run(BenchSettings(quick=True, device="cuda"))
