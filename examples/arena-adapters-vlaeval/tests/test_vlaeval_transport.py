"""The vla-eval transport against the reference server: one session per env, episodes, errors,
server-side chunking, faults, concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_vlaeval import codec
from arena_adapters_vlaeval.probe import synthetic_message
from arena_adapters_vlaeval.server import ReferenceServer, start_server
from arena_adapters_vlaeval.transport import VlaEvalTransport

from arena_adapters import load_policy
from arena_adapters import plugin as ap
from arena_adapters.testing.conformance import FaultSwitch


class RecordingModel:
    """Remembers each call's context; answers a chunk (3, 8) whose values encode the step."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.contexts: list[dict[str, Any]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, observation: dict[str, Any], context: dict[str, Any]) -> np.ndarray:
        with self.lock:
            self.contexts.append(dict(context))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on and observation["task_description"] == self.fail_on:
            raise RuntimeError("model exploded")
        return np.full((3, 8), float(context["step"]), np.float32)


@pytest.fixture
def model() -> RecordingModel:
    return RecordingModel()


@pytest.fixture
def server(model: RecordingModel) -> Iterator[ReferenceServer]:
    server = start_server(model, port=0)
    yield server
    server.stop()


def messages(env_ids: list[int], text: str = "") -> list[dict[str, Any]]:
    out = []
    for env_id in env_ids:
        message = synthetic_message(env_id, size=(8, 8))
        message["observation"]["task_description"] = text
        message["task"]["description"] = text
        out.append(message)
    return out


def types_by_session(server: ReferenceServer) -> dict[str, list[str]]:
    sessions: dict[str, list[str]] = {}
    for session_id, kind, _ in server.events:
        sessions.setdefault(session_id, []).append(kind)
    return sessions


def test_each_env_has_its_own_session_with_hello_and_episode_start(server: ReferenceServer,
                                                                    model: RecordingModel) -> None:
    with VlaEvalTransport(server.endpoint, timeout=5.0) as transport:
        replies = transport.infer(messages([0, 1, 2]))
        transport.infer(messages([0, 1, 2]))
        assert sorted(transport.sessions) == [0, 1, 2]
    assert [r["actions"].shape for r in replies] == [(3, 8)] * 3
    sessions = types_by_session(server)
    assert len(sessions) == 3
    for kinds in sessions.values():
        assert kinds == ["hello", "episode_start", "observation", "observation"]
    steps = sorted(c["step"] for c in model.contexts)
    assert steps == [0, 0, 0, 1, 1, 1], "each env's second observation must be step 1 of its own session"


def test_reset_ends_the_episode_and_the_next_observation_starts_one(server: ReferenceServer,
                                                                     model: RecordingModel) -> None:
    with VlaEvalTransport(server.endpoint, timeout=5.0) as transport:
        transport.infer(messages([0, 1], "first task"))
        transport.reset(np.array([1]))
        replies = transport.infer(messages([0, 1], "second task"))
    assert replies[0]["actions"][0, 0] == 1.0 and replies[1]["actions"][0, 0] == 0.0
    kinds = sorted(types_by_session(server).values(), key=len)
    assert kinds[0] == ["hello", "episode_start", "observation", "observation"]
    assert kinds[1] == ["hello", "episode_start", "observation", "episode_end", "episode_start", "observation"]
    assert model.contexts[-1]["task"]["description"] == "second task" or \
        model.contexts[-2]["task"]["description"] == "second task"


def test_a_model_error_is_a_server_error_and_the_session_recovers() -> None:
    model = RecordingModel(fail_on="explode")
    server = start_server(model, port=0)
    try:
        with VlaEvalTransport(server.endpoint, timeout=5.0) as transport:
            with pytest.raises(ap.ServerError, match="observation_failed: RuntimeError: model exploded"):
                transport.infer(messages([0], "explode"))
            assert transport.infer(messages([0], "fine"))[0]["actions"].shape == (3, 8)
    finally:
        server.stop()


def test_server_side_chunking_returns_one_action_per_observation_from_the_buffer() -> None:
    model = RecordingModel()
    server = start_server(model, port=0, chunk_size=2)
    try:
        with VlaEvalTransport(server.endpoint, timeout=5.0) as transport:
            shapes = [transport.infer(messages([0]))[0]["actions"].shape for _ in range(4)]
    finally:
        server.stop()
    assert shapes == [(8,)] * 4
    assert len(model.contexts) == 2, "a chunk of 2 serves two observations per model call"


def test_metadata_is_the_servers_hello(server: ReferenceServer) -> None:
    with VlaEvalTransport(server.endpoint, timeout=5.0) as transport:
        info = transport.metadata()
    assert info["model_server"] == "RecordingModel" and info["protocol_version"] == codec.PROTOCOL_VERSION
    assert set(info["action_spec"]) == {"joints", "gripper"}


def test_envs_are_queried_concurrently() -> None:
    model = RecordingModel(delay_s=0.4)
    server = start_server(model, port=0)
    try:
        with VlaEvalTransport(server.endpoint, timeout=10.0) as transport:
            transport.infer(messages([0, 1, 2, 3]))
            started = time.monotonic()
            transport.infer(messages([0, 1, 2, 3]))
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert elapsed < 4 * 0.4, f"4 envs took {elapsed:.2f} s: not sent concurrently"


def test_a_restarted_server_is_reached_again_with_a_new_episode() -> None:
    model = RecordingModel()
    server = start_server(model, port=0)
    port = int(server.endpoint.rsplit(":", 1)[1])
    with VlaEvalTransport(server.endpoint, timeout=3.0) as transport:
        transport.infer(messages([0]))
        server.stop()
        with pytest.raises(ap.TransportError):
            transport.infer(messages([0]))
        server = start_server(model, port=port)
        try:
            assert transport.infer(messages([0]))[0]["actions"][0, 0] == 0.0, "a new session starts at step 0"
            assert next(iter(types_by_session(server).values()))[:2] == ["hello", "episode_start"]
        finally:
            server.stop()


def test_a_reply_over_max_message_bytes_is_a_protocol_error(server: ReferenceServer) -> None:
    faults = FaultSwitch()
    hostile = start_server(port=0, fault_injector=faults)
    try:
        with VlaEvalTransport(hostile.endpoint, timeout=5.0, max_message_bytes=4096) as transport:
            transport.connect()
            faults.fault = ap.ReplyFault("replace", b"\x00" * 100_000)
            started = time.monotonic()
            with pytest.raises(ap.ProtocolError, match="max_message_bytes"):
                transport.infer(messages([0]))
            assert time.monotonic() - started < 5.0
    finally:
        hostile.stop()


def test_an_action_with_a_wrong_seq_is_a_protocol_error() -> None:
    faults = FaultSwitch()
    hostile = start_server(port=0, fault_injector=faults)
    try:
        with VlaEvalTransport(hostile.endpoint, timeout=5.0) as transport:
            transport.connect()
            stale = codec.pack(codec.Message(codec.ACTION, {"actions": np.zeros(8, np.float32)}, 999))
            faults.faults = [None, ap.ReplyFault("replace", stale)]  # HELLO passes, the ACTION is stale
            with pytest.raises(ap.ProtocolError, match="seq 999"):
                transport.infer(messages([0]))
    finally:
        hostile.stop()


def test_nan_actions_are_refused_by_the_policy_naming_the_envs() -> None:
    def nan_model(observation: dict[str, Any], context: dict[str, Any]) -> np.ndarray:
        actions = np.zeros((4, 8), np.float32)
        actions[:, 3] = np.nan
        return actions

    server = start_server(nan_model, port=0)
    try:
        with load_policy("vlaeval", endpoint=server.endpoint, timeout=5.0) as policy, \
                pytest.raises(ap.ActionError, match=r"env ids \[0, 1\] in action dims \[3\]"):
            policy.get_action(ap.droid_observation(2))
    finally:
        server.stop()


def test_translators_make_per_env_messages_and_stack_replies() -> None:
    from arena_adapters_vlaeval.translators import Actions, Observations

    observation = ap.droid_observation(3)
    query = ap.Query(torch.tensor([0, 2]), np.array([0, 2]), torch.device("cpu"), 3, ("a", "b"))
    request = Observations(image_size=(32, 48)).translate(observation, query)
    assert [m["env_id"] for m in request] == [0, 2]
    assert request[1]["observation"]["images"]["wrist_image_left"].shape == (32, 48, 3)
    assert request[1]["observation"]["task_description"] == "b"
    expected_state = torch.cat([observation["policy"]["joint_pos"][2], observation["policy"]["gripper_pos"][2]])
    assert np.allclose(request[1]["observation"]["state"], expected_state.numpy())
    for array in (request[1]["observation"]["state"], request[1]["observation"]["images"]["wrist_image_left"]):
        owner = array if array.base is None else array.base
        assert isinstance(owner, np.ndarray) and owner.flags.owndata, "arrays sent from worker threads must not be tensor views"
    actions = Actions().translate([{"actions": np.ones((5, 8))}, {"actions": np.zeros((5, 8))}], query)
    assert actions.shape == (2, 5, 8) and actions.dtype == torch.float32
    with pytest.raises(ap.ActionError, match="action_dim"):
        Actions().translate([{"actions": np.ones(7)}, {"actions": np.ones(7)}], query)
    with pytest.raises(ap.ObservationError, match="joint_pos"):
        Observations().translate({**observation, "policy": {"gripper_pos": observation["policy"]["gripper_pos"]}},
                                 query)


def test_a_port_in_use_is_a_start_failure_naming_it(server: ReferenceServer) -> None:
    port = int(server.endpoint.rsplit(":", 1)[1])
    with pytest.raises(ap.TransportError, match=f"127.0.0.1:{port}.*in use"):
        start_server(port=port)


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_compressed_images_reach_the_server(image_format: str) -> None:
    seen: list[tuple[tuple[int, ...], str]] = []

    def model(observation: dict[str, Any], context: dict[str, Any]) -> np.ndarray:
        image = observation["images"]["exterior_image_1_left"]
        seen.append((image.shape, str(image.dtype)))
        return np.zeros((2, 8), np.float32)

    server = start_server(model, port=0)
    try:
        with VlaEvalTransport(server.endpoint, timeout=5.0, image_format=image_format) as transport:  # type: ignore[arg-type]
            transport.infer(messages([0]))
    finally:
        server.stop()
    assert seen == [((8, 8, 3), "uint8")]


def test_an_unknown_image_format_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ap.ConfigError, match="image_format"):
        VlaEvalTransport("ws://127.0.0.1:1", image_format="gif")  # type: ignore[arg-type]
