"""Asynchronous prefetch: background queries, skipped elapsed actions, cancellation, ordering."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

import arena_adapters as aa
from arena_adapters.errors import ActionError, ConfigError, ServerError, TransportTimeout


class ClockEnv:
    """Each env's observation is its own step counter since its last reset, updated IN PLACE (as
    Isaac Lab updates its buffers), so a request that kept a view of it would see later values."""

    def __init__(self, num_envs: int, seed: int = 0, device: str = "cpu") -> None:
        self.clock = torch.zeros(num_envs, 1, device=device)
        self.rng = np.random.default_rng(seed)
        self.length = self.rng.integers(5, 40, num_envs)

    def observation(self) -> dict[str, Any]:
        return {"policy": {"clock": self.clock}}

    def step(self) -> np.ndarray:
        self.clock += 1
        done = np.flatnonzero(self.clock[:, 0].cpu().numpy() >= self.length)
        self.clock[torch.from_numpy(done).to(self.clock.device)] = 0
        self.length[done] = self.rng.integers(5, 40, len(done))
        return done


class ClockPolicy:
    """chunk[e, i] = clock_e + i: whatever step a chunk was asked at, its action for a step equals
    the env's clock at that step, if and only if elapsed actions are skipped correctly."""

    def __init__(self, horizon: int = 12, delay_s: float = 0.0) -> None:
        self.horizon, self.delay_s = horizon, delay_s
        self.active = 0
        self.most_active = 0
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.calls += 1
        try:
            time.sleep(self.delay_s)  # the env keeps stepping meanwhile
            clock = observation["policy"]["clock"]
            steps = torch.arange(self.horizon, dtype=clock.dtype, device=clock.device)
            return clock.unsqueeze(1) + steps.view(1, -1, 1)
        finally:
            with self.lock:
                self.active -= 1

    def reset(self, env_ids: Any) -> None:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.active -= 1


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize(("execute_steps", "prefetch_steps", "prefetch_window"),
                         [(8, 3, 0), (8, 7, 0), (4, 4, 0), (12, 1, 0), (8, 3, 4), (6, 2, 3)])
def test_actions_are_those_of_each_step_despite_queries_ahead_of_time(
    execute_steps: int, prefetch_steps: int, prefetch_window: int, device: str
) -> None:
    env = ClockEnv(6, seed=execute_steps + prefetch_steps, device=device)
    clock_policy = ClockPolicy(horizon=12, delay_s=0.002)
    with aa.load_policy("local", policy=clock_policy, execute_steps=execute_steps, prefetch_steps=prefetch_steps,
                        prefetch_window=prefetch_window) as policy:
        for _ in range(150):
            expected = env.clock[:, 0].clone()
            actions = policy.get_action(env.observation())
            assert actions.device == env.clock.device
            assert actions[:, 0].tolist() == expected.tolist()
            done = env.step()
            if len(done):
                policy.reset(done)
    assert clock_policy.most_active == 1, "the transport was used by two threads at once"


def test_the_env_keeps_stepping_while_a_chunk_is_in_flight() -> None:
    release, started = threading.Event(), threading.Event()
    calls: list[int] = []

    def blocking_policy(observation: dict[str, Any]) -> torch.Tensor:
        calls.append(len(calls))
        if len(calls) == 2:  # the first background request
            started.set()
            assert release.wait(timeout=10)
        return torch.zeros(2, 16, 3)

    with aa.load_policy("local", policy=blocking_policy, execute_steps=8, prefetch_steps=4) as policy:
        obs = {"policy": {"x": torch.zeros(2, 1)}}
        for _ in range(5):  # steps 0..4; at step 4 four actions are left: the request goes out
            policy.get_action(obs)
        assert started.wait(timeout=10)
        for _ in range(3):  # steps 5..7 replay while the server is still busy
            policy.get_action(obs)
        assert not release.is_set() and len(calls) == 2
        release.set()
        policy.get_action(obs)  # step 8: the prefetched chunk is used
    assert len(calls) == 2
    assert policy.stats.queries == 2


def test_a_reset_drops_the_chunk_in_flight_for_that_env() -> None:
    env = ClockEnv(3)
    clock_policy = ClockPolicy(horizon=10)
    with aa.load_policy("local", policy=clock_policy, execute_steps=6, prefetch_steps=3) as policy:
        for _ in range(4):  # step 3: 3 actions left, requests go out for every env
            policy.get_action(env.observation())
            env.step()
        env.clock[1] = 0
        policy.reset([1])  # env 1 starts over: its chunk in flight would be stale
        actions = policy.get_action(env.observation())
    assert actions[:, 0].tolist() == env.clock[:, 0].tolist()


def test_a_background_failure_surfaces_when_its_chunk_is_needed() -> None:
    calls: list[int] = []

    def failing_second_call(observation: dict[str, Any]) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise ServerError("model crashed", "model crashed")
        return torch.zeros(1, 4, 2)

    with aa.load_policy("local", policy=failing_second_call, execute_steps=4, prefetch_steps=2) as policy:
        obs = {"policy": {"x": torch.zeros(1, 1)}}
        for _ in range(4):
            policy.get_action(obs)
        with pytest.raises(ServerError, match="model crashed"):
            policy.get_action(obs)
        assert policy.get_action(obs).shape == (1, 2)  # asked again, synchronously
    assert len(calls) >= 3


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="'prefetch_steps' works with strategy 'replay', not 'lockstep'"):
        aa.load_policy("local", policy=ClockPolicy(), strategy="lockstep", prefetch_steps=2)
    with pytest.raises(ConfigError, match=r"option 'prefetch_steps'.*expected a value >= 0, got -1"):
        aa.load_policy("local", policy=ClockPolicy(), prefetch_steps=-1)
    with pytest.raises(ConfigError, match="'prefetch_window' merges requests ahead: it needs prefetch_steps >= 1"):
        aa.load_policy("local", policy=ClockPolicy(), prefetch_window=2)
    with pytest.raises(ConfigError, match=r"option 'prefetch_window'.*expected a value >= 0, got -1"):
        aa.load_policy("local", policy=ClockPolicy(), prefetch_steps=2, prefetch_window=-1)
    with pytest.raises(ConfigError, match="option 'aggregate' works with strategy 'replay' or 'lockstep'"):
        aa.load_policy("local", policy=ClockPolicy(), strategy="ensemble", aggregate="linear")
    replies = iter([8, 2])

    def shrinking(observation: dict[str, Any]) -> torch.Tensor:  # a chunk of 8 actions, then of 2
        return torch.zeros(1, next(replies), 1)

    with aa.load_policy("local", policy=shrinking, execute_steps=8, prefetch_steps=3) as policy:
        obs = ClockEnv(1).observation()
        for _ in range(8):  # step 5 asks ahead with 3 actions left
            policy.get_action(obs)
        with pytest.raises(ActionError, match="2 actions, none left after the 3 steps"):
            policy.get_action(obs)


def test_only_requests_sharing_memory_with_the_observation_are_copied() -> None:
    from arena_adapters.worker import detach_from

    joints = torch.arange(12.0).view(4, 3)
    image = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    observation = {"policy": {"joint_pos": joints}, "camera_obs": {"rgb": image}}
    fresh = np.ones((4, 3), np.float32)
    request = {"state": joints.numpy()[1:], "rows": joints[:2], "image": image.numpy(), "made": fresh,
               "batch": [image[0]], "prompt": "x"}
    detached = detach_from(request, observation)
    assert detached["made"] is fresh and detached["prompt"] == "x"
    joints += 100
    image += 7
    assert detached["state"].tolist() == [[3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]
    assert detached["rows"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert int(detached["image"].max()) == 0 and int(detached["batch"][0].max()) == 0


class JitteryClockPolicy(ClockPolicy):
    """A ClockPolicy whose chunks also carry which step's observation they came from, answering
    after a random delay: the actions taken must not depend on the delays."""

    def __init__(self, seed: int, max_delay_s: float) -> None:
        super().__init__(horizon=12)
        self.rng = np.random.default_rng(seed)
        self.max_delay_s = max_delay_s

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        self.delay_s = float(self.rng.uniform(0, self.max_delay_s))
        return super().__call__(observation) * 1.5 + 0.25  # not the clock itself: blending shows


@pytest.mark.parametrize("prefetch_window", [0, 3])
@pytest.mark.parametrize("aggregate", ["replace", "linear"])
def test_actions_do_not_depend_on_how_fast_the_server_answers(aggregate: str, prefetch_window: int) -> None:
    runs = []
    for seed, max_delay_s in ((0, 0.0), (1, 0.03)):
        env = ClockEnv(5, seed=3)
        taken = []
        with aa.load_policy("local", policy=JitteryClockPolicy(seed, max_delay_s), execute_steps=6,
                            prefetch_steps=4, prefetch_window=prefetch_window, aggregate=aggregate) as policy:
            for _ in range(60):
                taken.append(policy.get_action(env.observation())[:, 0].tolist())
                done = env.step()
                if len(done):
                    policy.reset(done)
        runs.append((taken, policy.stats.queries, policy.stats.env_requests))
    assert runs[0] == runs[1]


def test_a_step_that_queries_anyway_carries_the_envs_due_soon() -> None:
    sizes: list[int] = []

    def recording(observation: dict[str, Any]) -> torch.Tensor:
        sizes.append(observation["policy"]["x"].shape[0])
        return torch.zeros(sizes[-1], 8, 1)

    with aa.load_policy("local", policy=recording, execute_steps=8, prefetch_steps=3) as policy:
        obs = {"policy": {"x": torch.zeros(2, 1)}}
        policy.get_action(obs)          # step 0: both envs, synchronously
        for _ in range(4):              # steps 1..4
            policy.get_action(obs)
        policy.reset([0])               # step 5: env 0 is due now, env 1 has 3 actions left
        policy.get_action(obs)
        assert sizes == [2, 2]          # one request for both: env 1's chunk takes over at step 8
        for _ in range(4):              # steps 6..9: nobody is due or asked ahead
            policy.get_action(obs)
        assert policy.scheduler is not None and policy.scheduler.in_flight_envs.tolist() == []
        assert policy.scheduler.requests_per_env.tolist() == [2, 2]
    assert policy.stats.queries == 2 and sizes == [2, 2]


def test_a_chunk_that_never_arrives_ends_in_a_transport_timeout() -> None:
    release = threading.Event()
    calls: list[int] = []

    class StuckTransportPolicy:
        def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
            calls.append(1)
            if len(calls) == 2:
                release.wait(timeout=10)
            return torch.zeros(1, 4, 2)

    with aa.load_policy("local", policy=StuckTransportPolicy(), execute_steps=4, prefetch_steps=2) as policy:
        policy.transport.timeout = 0.05  # type: ignore[attr-defined]
        import arena_adapters.policy as policy_module

        slack, policy_module.WAIT_SLACK_S = policy_module.WAIT_SLACK_S, 0.05
        try:
            obs = {"policy": {"x": torch.zeros(1, 1)}}
            for _ in range(4):
                policy.get_action(obs)
            started = time.monotonic()
            with pytest.raises(TransportTimeout):  # the transport's deadline, or the wait's bound
                policy.get_action(obs)
            assert time.monotonic() - started < 2.0
        finally:
            policy_module.WAIT_SLACK_S = slack
            release.set()


def test_aggregation_blends_a_prefetched_chunk_with_the_rest_of_the_old_one() -> None:
    calls: list[int] = []

    def constant_chunks(observation: dict[str, Any]) -> torch.Tensor:
        calls.append(1)
        return torch.full((1, 8, 1), 10.0 * len(calls))  # 10, then 20, ...

    with aa.load_policy("local", policy=constant_chunks, execute_steps=4, prefetch_steps=2,
                        aggregate="average", aggregate_weight=0.25) as policy:
        obs = {"policy": {"x": torch.zeros(1, 1)}}
        taken = [policy.get_action(obs).item() for _ in range(6)]
    # steps 0-3: the first chunk; step 2 asks ahead; from step 4 the second chunk (its first 2
    # actions skipped) is blended with the 4 actions left of the first: 0.25 * 20 + 0.75 * 10
    assert taken == [10.0, 10.0, 10.0, 10.0, 12.5, 12.5]


def test_host_copies_reuse_a_buffer_only_once_nothing_refers_to_it() -> None:
    from arena_adapters.worker import HostBuffers, detach_from

    buffers = HostBuffers(keep=2)
    image = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    joints = torch.zeros(4, 3)
    observation = {"camera_obs": {"rgb": image}, "policy": {"joint_pos": joints}}

    def request() -> dict[str, Any]:
        return {"image": image.numpy(), "rows": image, "joints": joints.numpy()}

    image += 1
    first = detach_from(request(), observation, buffers)
    assert isinstance(first["rows"], torch.Tensor) and isinstance(first["image"], np.ndarray)
    assert buffers.allocated == 3  # one host buffer per copy
    held = first["rows"][1:]  # a view kept alive (as a policy keeping its observation would)
    kept_image = first["image"]
    del first
    image += 1
    second = detach_from(request(), observation, buffers)
    assert buffers.allocated == 5  # the joints' buffer was free again; both images are still referred to
    assert int(held.max()) == 1 and int(kept_image.max()) == 1 and int(second["rows"].max()) == 2
    del second, held, kept_image
    image += 1
    third = detach_from(request(), observation, buffers)
    assert buffers.allocated == 5  # everything reused
    image += 1  # the env writes its buffers in place: the copies keep the values of their step
    assert int(third["image"].max()) == 3 and int(third["rows"].max()) == 3
    assert third["joints"].tolist() == joints.tolist()


@pytest.mark.parametrize(("prefetch_window", "expected_sizes"), [(0, [2, 2, 2, 2]), (2, [4, 4])])
def test_a_window_merges_requests_ahead_of_groups_out_of_phase(prefetch_window: int, expected_sizes: list[int]) -> None:
    """Four groups of two envs, their chunks running out 2 steps apart: each group is asked alone,
    or, with a window of 2, with the group that gets there 2 steps later (half the requests).
    Requests are recorded with the step whose observation they carry (they run on the worker)."""
    requests: list[tuple[int, int]] = []

    def recording(observation: dict[str, Any]) -> torch.Tensor:
        x = observation["policy"]["x"]
        requests.append((int(x[0, 0]), x.shape[0]))
        return torch.zeros(x.shape[0], 16, 1)

    with aa.load_policy("local", policy=recording, execute_steps=8, prefetch_steps=4,
                        prefetch_window=prefetch_window) as policy:
        for step in range(32):  # every request made before step 24 is needed, so done, by step 30
            if step in (2, 4, 6):
                policy.reset([step - 2, step - 1])  # group step // 2 starts over here
            policy.get_action({"policy": {"x": torch.full((8, 1), float(step))}})
            if step == 23:
                assert policy.scheduler is not None
                assert policy.scheduler.remaining().tolist() == [2, 2, 4, 4, 6, 6, 0, 0]  # 2 steps apart
    sizes = [size for step, size in sorted(requests) if 16 <= step < 24]
    assert sizes == expected_sizes  # steps 16..23: one cycle of execute_steps
