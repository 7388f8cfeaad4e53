"""What the policy promises whatever its parts do: replicas with failover, deadlines on any
transport, typed errors with context, no NaN actions, bounded memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
import torch

import arena_adapters as aa
from arena_adapters.errors import ActionError, ObservationError, TransportError, TransportTimeout
from arena_adapters.local import ChunkActions, PassthroughObservations
from arena_adapters.parts import EnvIds, Health, Query
from arena_adapters.policy import LATENCY_SAMPLES, InferenceStats, Policy
from arena_adapters.transport import Deadline, ReplicaSet

HORIZON = 4


def observation(num_envs: int) -> dict[str, Any]:
    return {"policy": {"env_id": torch.arange(num_envs, dtype=torch.float32).unsqueeze(1)}}


class FakeReplica:
    """A replica that answers chunks whose actions are the env ids it was sent, or fails when down."""

    def __init__(self, name: str) -> None:
        self.endpoint = name
        self.timeout = 1.0
        self.down = False
        self.received: list[list[int]] = []
        self.closed = False

    def connect(self, deadline: Any = None) -> None:
        if self.down:
            raise TransportError(f"{self.endpoint}: connection refused", retryable=True)

    def health(self, deadline: Any = None) -> Health:
        return Health(ok=not self.down)

    def metadata(self, deadline: Any = None) -> Mapping[str, Any]:
        return {}

    def infer(self, request: Any, deadline: Any = None) -> torch.Tensor:
        assert isinstance(deadline, Deadline) and deadline.remaining() > 0
        if self.down:
            raise TransportTimeout(f"{self.endpoint}: no reply")
        ids = request["policy"]["env_id"][:, 0]
        self.received.append(ids.long().tolist())
        return ids.reshape(-1, 1, 1).repeat(1, HORIZON, 1)

    def reset(self, env_ids: EnvIds | None, deadline: Any = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def replicated(count: int, retry_after: float = 10.0, **options: Any) -> tuple[Policy, list[FakeReplica]]:
    replicas = [FakeReplica(f"fake://replica-{i}:1") for i in range(count)]
    replica_set = ReplicaSet(replicas, [r.endpoint for r in replicas], retry_after=retry_after)
    policy = Policy("fake", PassthroughObservations(), ChunkActions(), replica_set, **options)
    return policy, replicas


def test_env_groups_go_to_replicas_whole_and_in_order() -> None:
    policy, replicas = replicated(2)
    actions = policy.get_action(observation(8))
    assert actions[:, 0].tolist() == list(range(8))
    assert replicas[0].received == [[0, 1, 2, 3]] and replicas[1].received == [[4, 5, 6, 7]]
    assert [(s.requests, s.env_requests) for s in policy.stats.replicas] == [(1, 4), (1, 4)]
    policy.close()
    assert all(replica.closed for replica in replicas)


def test_a_replica_down_at_connect_is_taken_out() -> None:
    policy, replicas = replicated(2)
    replicas[0].down = True
    assert policy.get_action(observation(4))[:, 0].tolist() == [0, 1, 2, 3]
    assert replicas[1].received == [[0, 1, 2, 3]] and not policy.stats.replicas[0].live
    policy.close()


def test_a_failed_replica_is_taken_out_its_envs_move_and_it_comes_back_when_healthy() -> None:
    policy, replicas = replicated(2, retry_after=0.2, execute_steps=1)
    policy.get_action(observation(8))
    replicas[1].down = True
    actions = policy.get_action(observation(8))
    assert actions[:, 0].tolist() == list(range(8))  # resent to replica 0: nothing lost
    assert policy.stats.failovers == 1 and not policy.stats.replicas[1].live
    assert sorted(replicas[0].received[-2:]) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # its own group, then the resent one
    policy.get_action(observation(8))
    assert replicas[0].received[-1] == list(range(8))  # while out, every env goes to replica 0
    replicas[1].down = False
    time.sleep(0.25)
    policy.get_action(observation(8))
    assert policy.stats.replicas[1].live and replicas[1].received[-1] == [4, 5, 6, 7]
    policy.close()


def test_without_failover_the_error_names_the_replica() -> None:
    policy, replicas = replicated(2, failover_resend=False, execute_steps=1)
    policy.get_action(observation(8))
    replicas[1].down = True
    with pytest.raises(TransportTimeout) as caught:
        policy.get_action(observation(8))
    assert caught.value.adapter == "fake" and caught.value.endpoint == "fake://replica-1:1"
    assert "4 envs" in (caught.value.request or "")
    policy.close()


class PerEnvObservations:
    """One message per queried env: its id (as a per-env protocol's translator makes them)."""

    def translate(self, observation: Any, query: Query) -> list[dict[str, int]]:
        return [{"env": int(env)} for env in query.env_ids_host]


class PerEnvActions:
    """Each env's reply (its id) as a chunk of that action."""

    def translate(self, reply: Any, query: Query) -> torch.Tensor:
        ids = torch.tensor([float(item["env"]) for item in reply])
        return ids.reshape(-1, 1, 1).repeat(1, HORIZON, 1).to(query.device)


class SplitReplica(FakeReplica):
    """A per-env replica whose requests can be sent and read back apart (as a kit transport on
    SplitConnections): ``events`` logs every send and read, ``failure`` makes its reads fail."""

    per_env_requests = True
    sends_apart = True

    def __init__(self, name: str, events: list[tuple[str, str]]) -> None:
        super().__init__(name)
        self.events = events
        self.failure: Exception | None = None
        self.dropped = 0

    def infer(self, request: Any, deadline: Any = None) -> Any:
        return self.send_each(request, deadline).collect()

    def send_each(self, messages: list[dict[str, int]], deadline: Any = None, what: str = "inference") -> Any:
        assert isinstance(deadline, Deadline) and deadline.remaining() > 0
        self.events.append(("send", self.endpoint))
        self.received.append([message["env"] for message in messages])
        replica = self

        class Pending:
            def collect(self) -> list[dict[str, int]]:
                replica.events.append(("read", replica.endpoint))
                if replica.failure is not None:
                    raise replica.failure
                return list(messages)

            def abort(self) -> None:
                replica.dropped += 1

        return Pending()


def split_replicated(count: int, **options: Any) -> tuple[Policy, list[SplitReplica], list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    replicas = [SplitReplica(f"fake://replica-{i}:1", events) for i in range(count)]
    replica_set = ReplicaSet(replicas, [r.endpoint for r in replicas])
    return Policy("fake", PerEnvObservations(), PerEnvActions(), replica_set, execute_steps=1, **options), replicas, events


def test_replicas_that_send_apart_get_every_group_sent_before_any_is_read() -> None:
    policy, replicas, events = split_replicated(3)
    actions = policy.get_action(observation(9))
    assert actions[:, 0].tolist() == list(range(9))
    assert [kind for kind, _ in events] == ["send"] * 3 + ["read"] * 3
    assert [r.received for r in replicas] == [[[0, 1, 2]], [[3, 4, 5]], [[6, 7, 8]]]
    assert policy._replica_threads is not None and policy._replica_threads.threads == 0  # none was started
    assert [(s.requests, s.env_requests) for s in policy.stats.replicas] == [(1, 3)] * 3
    policy.close()


def test_a_group_sent_apart_whose_replica_failed_is_resent_after_every_group_was_read() -> None:
    policy, replicas, events = split_replicated(3)
    policy.get_action(observation(9))
    events.clear()
    replicas[0].failure = TransportTimeout("fake://replica-0:1: no reply")
    actions = policy.get_action(observation(9))
    assert actions[:, 0].tolist() == list(range(9))  # nothing lost
    assert events[:6] == [("send", r.endpoint) for r in replicas] + [("read", r.endpoint) for r in replicas]
    assert events[6][0] == "send" and events[6][1] != replicas[0].endpoint  # the resend, to a live replica
    assert policy.stats.failovers == 1 and not policy.stats.replicas[0].live
    policy.close()


def test_a_fatal_failure_of_a_group_sent_apart_drops_the_others_and_names_its_replica() -> None:
    policy, replicas, events = split_replicated(3)
    policy.get_action(observation(9))
    events.clear()
    replicas[1].failure = ActionError("reply 0: expected numeric actions")
    with pytest.raises(ActionError, match="expected numeric actions") as caught:
        policy.get_action(observation(9))
    assert caught.value.adapter == "fake" and caught.value.endpoint == "fake://replica-1:1"
    assert "3 envs" in (caught.value.request or "")
    assert [kind for kind, _ in events] == ["send"] * 3 + ["read"] * 2  # the third group was never read...
    assert replicas[2].dropped == 1 and replicas[0].dropped == 0  # ...but dropped
    assert policy.stats.failovers == 0
    policy.close()


def test_endpoint_lists_build_one_transport_per_replica_for_any_adapter() -> None:
    pytest.importorskip("arena_adapters_gr00t")
    policy = aa.load_policy("gr00t", endpoint="tcp://127.0.0.1:5555, tcp://127.0.0.1:5556")
    assert [s.endpoint for s in policy.stats.replicas] == ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"]
    policy.close()


# ---------------------------------------------------------------------------------- deadlines


def test_a_hung_local_callable_is_a_timeout_and_close_is_prompt() -> None:
    release = threading.Event()

    def hung(observation: Any) -> Any:
        release.wait(30)
        raise AssertionError("released")

    policy = aa.load_policy("local", policy=hung, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransportTimeout) as caught:
        policy.get_action(observation(2))
    assert time.monotonic() - started < 1.5
    assert caught.value.adapter == "local"
    closing = time.monotonic()
    policy.close()
    assert time.monotonic() - closing < 0.5
    release.set()


def test_a_local_policy_failure_is_a_server_error_with_its_traceback() -> None:
    def broken(observation: Any) -> Any:
        raise KeyError("camera")

    with aa.load_policy("local", policy=broken) as policy, pytest.raises(aa.ServerError) as caught:
        policy.get_action(observation(2))
    assert "KeyError" in caught.value.server_message and "Traceback" in caught.value.server_message


# ------------------------------------------------------------------------------- typed errors


def test_a_translator_bug_is_a_typed_error_with_context() -> None:
    class Broken:
        def translate(self, observation: Any, query: Query) -> Any:
            return observation["missing"]

    policy = Policy("fake", Broken(), ChunkActions(), FakeReplica("fake://r:1"))  # type: ignore[arg-type]
    with pytest.raises(ObservationError, match="KeyError") as caught:
        policy.get_action(observation(2))
    assert caught.value.adapter == "fake"
    policy.close()


def test_nan_actions_are_refused_naming_envs_and_dims() -> None:
    def nan_policy(observation: Any) -> torch.Tensor:
        chunk = torch.zeros(len(observation["policy"]["env_id"]), HORIZON, 3)
        chunk[1, 2, 2] = float("nan")
        chunk[3, 0, 0] = float("inf")
        return chunk

    with aa.load_policy("local", policy=nan_policy) as policy, pytest.raises(ActionError) as caught:
        policy.get_action(observation(4))
    message = str(caught.value)
    assert "env ids [1, 3]" in message and "action dims [0, 2]" in message and "allow_nonfinite_actions" in message
    with aa.load_policy("local", policy=nan_policy, allow_nonfinite_actions=True) as policy:
        assert not torch.isfinite(policy.get_action(observation(4))).all()


def test_latencies_are_bounded() -> None:
    stats = InferenceStats()
    for value in range(LATENCY_SAMPLES + 10):
        stats.add_latency(float(value))
    assert len(stats.latencies_s) == LATENCY_SAMPLES and stats.latency_count == LATENCY_SAMPLES + 10
    assert stats.latencies_since(LATENCY_SAMPLES + 7) == [float(LATENCY_SAMPLES + 7), float(LATENCY_SAMPLES + 8),
                                                          float(LATENCY_SAMPLES + 9)]
