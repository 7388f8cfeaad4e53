"""The Inspect Robots bridge: real ``inspect_robots.eval()`` runs through our GR00T adapter against the
GR00T reference server on loopback, with a small DROID-like embodiment written here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

inspect_robots = pytest.importorskip("inspect_robots")
gr00t_server = pytest.importorskip("arena_adapters_gr00t.server")

from inspect_robots import (  # noqa: E402
    Action,
    ActionSemantics,
    Box,
    CameraSpec,
    EmbodimentInfo,
    Observation,
    ObservationSpace,
    Scene,
    StepResult,
    Task,
    success_at_end,
)

from arena_adapters.errors import ConfigError, UnknownAdapterError  # noqa: E402
from arena_adapters.integrations.inspect_robots import (  # noqa: E402
    ArenaAdapterPolicy,
    arena_policy,
    gr00t_policy,
    policy_factory,
)
from arena_adapters.plugins import PluginRegistry  # noqa: E402

HEIGHT, WIDTH = 24, 32
RAMP = np.float32(0.01) * np.arange(32, dtype=np.float32)  # the reference server's built-in policy


class DroidReach:
    """A DROID arm reaching joint targets: 7 joints and a gripper, two cameras, absolute joint actions.

    Each episode starts at joints drawn from the seed; it succeeds when every joint has moved up
    by the scene's ``reach`` (``scene.metadata``). Every executed action is recorded.
    """

    def __init__(self, action_dim: int = 8) -> None:
        self.info = EmbodimentInfo(
            name="droid-reach",
            action_space=Box((action_dim,), semantics=ActionSemantics("joint_pos", gripper="continuous")),
            observation_space=ObservationSpace(
                cameras=(CameraSpec("external_camera_rgb", HEIGHT, WIDTH), CameraSpec("wrist_camera_rgb", HEIGHT, WIDTH)),
                state_keys=frozenset({"joint_pos", "gripper_pos"}),
            ),
            control_hz=15.0,
            is_simulated=True,
        )
        self.executed: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        self.closed = False

    def reset(self, scene: Scene, *, seed: int | None = None) -> Observation:
        rng = np.random.default_rng(seed)
        self.joints = rng.uniform(-0.5, 0.5, 7)
        self.gripper = np.array([0.5])
        self.target = self.joints + float(scene.metadata["reach"])
        self.instruction = scene.instruction
        self.starts.append(np.concatenate([self.joints, self.gripper]))
        return self._observe()

    def step(self, action: Action) -> StepResult:
        self.executed.append(np.asarray(action.data))
        self.joints = np.asarray(action.data[:7], dtype=np.float64)
        self.gripper = np.asarray(action.data[7:8], dtype=np.float64)
        reached = bool(np.all(self.joints >= self.target - 1e-6))
        distance = float(np.max(self.target - self.joints))
        return StepResult(self._observe(), terminated=reached, termination_reason="success" if reached else None,
                          info={"distance": distance})

    def close(self) -> None:
        self.closed = True

    def _observe(self) -> Observation:
        shade = np.uint8(int(100 + 100 * self.gripper[0]) % 256)
        return Observation(
            images={"external_camera_rgb": np.full((HEIGHT, WIDTH, 3), shade, np.uint8),
                     "wrist_camera_rgb": np.zeros((HEIGHT, WIDTH, 3), np.uint8)},
            state={"joint_pos": self.joints.copy(), "gripper_pos": self.gripper.copy()},
            instruction=self.instruction,
        )


def reach_task(*reaches: float, max_steps: int = 40) -> Task:
    scenes = [Scene(id=f"reach-{i}", instruction="raise every joint", init_seed=i, metadata={"reach": reach})
              for i, reach in enumerate(reaches)]
    return Task(name="droid-reach", scenes=scenes, scorer=success_at_end(), max_steps=max_steps)


@pytest.fixture
def server() -> Iterator[Any]:
    running = gr00t_server.ReferenceServer(None, "127.0.0.1", 0).start()
    yield running
    running.stop()


def _run(policy: Any, embodiment: Any, task: Task, tmp_path: Path) -> Any:
    (log,) = inspect_robots.eval(task, policy, embodiment, log_dir=str(tmp_path / "logs"), store_actions=False)
    return log


def test_eval_runs_gr00t_through_the_bridge(server: Any, tmp_path: Path) -> None:
    embodiment = DroidReach()
    policy = ArenaAdapterPolicy("gr00t", endpoint=server.endpoint, timeout=10.0)
    try:
        log = _run(policy, embodiment, reach_task(0.2, 5.0), tmp_path)
    finally:
        policy.close()
    assert log.status == "success", log.error
    by_scene = {sample.scene_id: sample for sample in log.samples}
    assert by_scene["reach-0"].reduced["success_at_end"] == 1.0  # +0.07 per chunk of 8: reached in 3 chunks
    assert by_scene["reach-1"].reduced["success_at_end"] == 0.0  # 5.0 is out of reach in 40 steps
    assert log.eval.policy == "arena-gr00t"
    assert log.eval.policy_config["action_horizon"] == 8  # the gr00t adapter's execute_steps
    # the first chunk is the server's rule applied to the mapped state: state + 0.01 * t, 8 of its 32 steps
    first = np.stack(embodiment.executed[:8])
    np.testing.assert_allclose(first, embodiment.starts[0].astype(np.float32)[None, :] + RAMP[:8, None], atol=1e-6)
    assert policy.policy.stats.queries == 3 + 5  # one server query per chunk: 3 chunks, then 40 steps / 8
    assert log.stats.mean_inference_latency_s is not None and log.stats.mean_inference_latency_s > 0


def test_entry_points_name_every_first_party_adapter_and_resolve(server: Any, tmp_path: Path) -> None:
    from inspect_robots import registered, resolve

    policies = registered("policy")
    assert {"arena", "arena-gr00t", "arena-openpi", "arena-openvla"} <= set(policies)
    assert policies["arena-gr00t"] is gr00t_policy and policies["arena"] is arena_policy
    assert gr00t_policy.RUNTIME_REQUIREMENTS == {"arena_adapters_gr00t": "pip install 'arena-adapters[gr00t]'"}
    by_name = resolve("policy", "arena-gr00t", endpoint=server.endpoint, execute_steps=4)
    generic = resolve("policy", "arena", adapter="gr00t", endpoint=server.endpoint, name="my-gr00t")
    try:
        log = _run(by_name, DroidReach(), reach_task(0.05, max_steps=12), tmp_path)
        assert log.status == "success" and log.samples[0].reduced["success_at_end"] == 1.0
        assert log.eval.policy_config["action_horizon"] == 4
        assert generic.info.name == "my-gr00t"
    finally:
        by_name.close()
        generic.close()


def test_a_dead_server_is_a_trial_error_with_the_server_url_and_remedy(server: Any, tmp_path: Path) -> None:
    endpoint = server.endpoint
    server.stop()
    policy = ArenaAdapterPolicy("gr00t", endpoint=endpoint, timeout=0.5)
    try:
        log = _run(policy, DroidReach(), reach_task(0.2, max_steps=8), tmp_path)
    finally:
        policy.close()
    error = log.samples[0].error or ""
    assert log.samples[0].status == "error"
    assert f"could not hold a connection to its action server at {endpoint}" in error
    assert "within 0.5 s" in error  # the adapter's typed timeout, then Inspect Robots' hints
    assert "hint: start the gr00t policy server" in error and "'arena-adapters serve gr00t'" in error


def test_an_action_width_mismatch_is_refused_before_any_motion(server: Any, tmp_path: Path) -> None:
    policy = ArenaAdapterPolicy("gr00t", endpoint=server.endpoint, action_dim=7)
    try:
        with pytest.raises(ConfigError) as caught:  # the declared layout is checked when the policy binds
            _run(policy, DroidReach(action_dim=7), reach_task(0.2, max_steps=8), tmp_path)
        assert policy.policy.stats.queries == 0
    finally:
        policy.close()
    assert "the policy sends 8 action dims, the env takes 7" in str(caught.value)
    assert "--action-dim" in str(caught.value)


def test_observation_map_renames_entries_for_any_adapter() -> None:
    seen: list[dict[str, Any]] = []

    def chunk_of_state(observation: dict[str, Any]) -> Any:
        seen.append(observation)
        state = observation["robot"]["q"]
        return state.unsqueeze(1).repeat(1, 3, 1) + 1.0

    policy = ArenaAdapterPolicy("local", policy=chunk_of_state, action_dim=2,
                                observation_map={"state.joints": "robot.q", "images.front": "cams.front"})
    observation = Observation(images={"front": np.zeros((4, 5, 3), np.uint8)},
                              state={"joints": np.array([0.25, -1.0]), "extra": np.array([7.0])},
                              instruction="wave")
    policy.reset(Scene(id="s", instruction="wave"))
    chunk = policy.act(observation)
    assert len(chunk) == 3  # local has no execute_steps default: the whole chunk
    np.testing.assert_allclose(np.stack([a.data for a in chunk.actions]), [[1.25, 0.0]] * 3)
    received = seen[0]
    assert tuple(received["cams"]["front"].shape) == (1, 4, 5, 3)
    assert received["policy"]["extra"].tolist() == [[7.0]] and received["instruction"] == ["wave"]
    assert len(seen) == 1
    policy.close()


def test_bad_configuration_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="open loop"):
        ArenaAdapterPolicy("gr00t", strategy="ensemble")
    with pytest.raises(ConfigError, match="observation_map"):
        ArenaAdapterPolicy("gr00t", observation_map={"joints": "policy.joint_pos"})
    with pytest.raises(UnknownAdapterError, match=r"pip install arena-adapters-openpi"):
        ArenaAdapterPolicy("openpi", registry=PluginRegistry(autoload=False))
    third_party = policy_factory("mybot", {"mybot_driver": "pip install mybot"})
    assert third_party.__name__ == "arena-mybot" and third_party.RUNTIME_REQUIREMENTS == {"mybot_driver": "pip install mybot"}
