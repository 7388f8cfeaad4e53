"""A third-party plugin serves the demo's expert through its own ``register_served_experts``.

The plugin is a real installed distribution (``.dist-info`` with an entry point on ``sys.path``, and
on ``PYTHONPATH`` for the server process): its adapter ``myrobot`` reuses the GR00T transport,
translators and reference server, and its served expert plans 12-step chunks that the client
executes whole, so the demo's counts show that its expert, not the GR00T plugin's, answered.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from arena_adapters import plugins
from arena_adapters.envs.expert_server import served_expert, start_expert_server
from arena_adapters.evaluation.demo import demo_adapters, run_demo

MYROBOT_PLUGIN = '''
from arena_adapters import hookimpl
from arena_adapters.envs.reach_expert import ReachExpert
from arena_adapters.records import AdapterRecord, ServedExpertRecord

HORIZON = 12


class MyRobotReachExpert:
    """Flat GR00T observations in, flat 12-step chunks out (served as is)."""

    def __init__(self):
        self.expert = ReachExpert(HORIZON)

    def get_action(self, observation, options=None):
        chunk = self.expert.plan(observation["video.exterior_image_1_left"][:, -1],
                                 observation["state.joint_position"][:, -1],
                                 observation["state.gripper_position"][:, -1])
        return {"action.joint_position": chunk[..., :7], "action.gripper_position": chunk[..., 7:]}, {}


@hookimpl
def register_adapters(register):
    register(AdapterRecord(
        name="myrobot", protocol="gr00t", transport="gr00t.zmq", observation_translator="gr00t.droid",
        action_translator="gr00t.droid", reference_server="gr00t.server"))


@hookimpl
def register_served_experts(register):
    register(ServedExpertRecord(
        name="myrobot.reach_expert", protocol="gr00t", adapter="myrobot", environment="reach",
        factory=MyRobotReachExpert, client_options={"execute_steps": HORIZON}))
'''


@pytest.fixture
def myrobot(install_plugin, tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    module = install_plugin("myrobot-adapters", MYROBOT_PLUGIN, {"myrobot": "{module}"})
    site = str(tmp_path / "site-packages")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(plugins, "_default_registry", None)  # a registry that sees the new distribution
    return module


def test_the_demo_serves_the_expert_through_a_third_party_adapter(myrobot: str) -> None:
    assert "myrobot" in demo_adapters()
    record = served_expert("myrobot")
    assert record.factory.__module__ == myrobot and record.server_options == {}
    result = run_demo("myrobot", num_envs=2, num_episodes=2, figure=False,
                      env_options={"num_targets": 1, "target_speed": 0.0, "image_height": 90, "image_width": 160})
    assert result.completed == 2 and result.success_rate == 1.0
    assert result.info["endpoint"].startswith("tcp://")
    comparison = result.request_comparison
    assert comparison is not None and comparison.chunk_steps == 12  # the plugin's 12-step chunks, executed whole
    assert comparison.sent == comparison.ideal


def test_the_expert_server_finds_a_third_party_expert_by_adapter_name(myrobot: str) -> None:
    import zmq
    from arena_adapters_gr00t.codec import decode, encode

    server = start_expert_server("myrobot")
    try:
        context = zmq.Context()
        socket = context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 10_000)
        socket.connect(server.endpoint)
        image = np.zeros((2, 1, 90, 160, 3), dtype=np.uint8)
        observation = {"video.exterior_image_1_left": image,
                       "state.joint_position": np.zeros((2, 1, 7), dtype=np.float32),
                       "state.gripper_position": np.zeros((2, 1, 1), dtype=np.float32)}
        socket.send(encode({"endpoint": "get_action", "data": {"observation": observation}}))
        action, _ = decode(socket.recv())
        assert action["action.joint_position"].shape == (2, 12, 7)
        assert action["action.gripper_position"].shape == (2, 12, 1)
        socket.close()
        context.term()
    finally:
        server.stop()
