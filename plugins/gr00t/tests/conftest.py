"""Shared fixtures of the gr00t plugin tests: golden cases, reference servers, DROID observations."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from arena_adapters_gr00t.modality import ModalityConfig, is_modality_config_map
from arena_adapters_gr00t.server import ReferenceServer
from arena_adapters_gr00t.transport import Gr00tTransport

from arena_adapters.testing.golden import GoldenCase, load_cases, rebuild


@pytest.fixture(scope="session")
def golden_cases(golden_dir: Path) -> dict[str, GoldenCase]:
    cases = {case.name: case for case in load_cases(golden_dir, "gr00t")}
    assert cases, "no gr00t golden cases"
    return cases


def _on_map(value: dict[str, Any]) -> Any:
    return ModalityConfig.from_wire(value) if is_modality_config_map(value) else value


def rebuild_gr00t(tree: Any) -> Any:
    """Rebuild a golden TREE for GR00T: ModalityConfig maps become objects."""
    return rebuild(tree, on_map=_on_map)


@pytest.fixture(scope="session")
def rebuild_value() -> Callable[[Any], Any]:
    return rebuild_gr00t


@pytest.fixture
def start_server() -> Iterator[Callable[..., ReferenceServer]]:
    """Start reference servers on free loopback ports; all are stopped after the test."""
    servers: list[ReferenceServer] = []

    def start(policy: Any = None, port: int = 0, **options: Any) -> ReferenceServer:
        server = ReferenceServer(policy, "127.0.0.1", port, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., ReferenceServer]) -> ReferenceServer:
    """The built-in DROID test policy, flat format (as the gr00t adapter expects)."""
    return start_server()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_droid_observation(num_envs: int, height: int = 48, width: int = 64, seed: int = 0) -> dict[str, Any]:
    """An Isaac Lab Arena DROID observation: two uint8 cameras, 7 joints, gripper (CPU tensors)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "camera_obs": {
            "external_camera_rgb": torch.randint(0, 256, (num_envs, height, width, 3), dtype=torch.uint8,
                                                 generator=generator),
            "wrist_camera_rgb": torch.randint(0, 256, (num_envs, height, width, 3), dtype=torch.uint8,
                                              generator=generator),
        },
        "policy": {
            "joint_pos": torch.randn(num_envs, 7, generator=generator),
            "gripper_pos": torch.rand(num_envs, 1, generator=generator),
        },
    }


@pytest.fixture
def droid_observation() -> Callable[..., dict[str, Any]]:
    return make_droid_observation


def expected_chunk(state: np.ndarray, horizon: int = 32) -> np.ndarray:
    """The built-in test policy's rule: state[:, None, :] + 0.01 * arange(horizon), in float32."""
    ramp = np.float32(0.01) * np.arange(horizon, dtype=np.float32)
    return state.astype(np.float32)[:, None, :] + ramp[None, :, None]


@pytest.fixture
def expected_actions() -> Callable[..., np.ndarray]:
    return expected_chunk


@pytest.fixture
def tmp_yaml(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "embodiment.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def transports() -> Iterator[Callable[..., Gr00tTransport]]:
    """Transports made by the test, closed after it."""
    made: list[Gr00tTransport] = []

    def make(endpoint: str, **options: Any) -> Gr00tTransport:
        made.append(Gr00tTransport(endpoint, **options))
        return made[-1]

    yield make
    for transport in made:
        transport.close()
