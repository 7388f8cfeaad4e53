"""The ``reach`` expert and a random baseline for the in-process ``local`` adapter.

Both take the env's own observation (nested dicts of tensors, rows of the queried envs) and return
chunks on its device; no protocol is involved. Serving the expert through a wire protocol is each
plugin's business: a plugin registers an :class:`~arena_adapters.records.ExpertServingRecord` (see
:func:`arena_adapters.hookspecs.register_expert_servings`) that turns its protocol's observation
into :class:`~arena_adapters.envs.reach_expert.ReachExpert` inputs and the expert's chunk into its
protocol's reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from arena_adapters.envs import reach_geometry as geometry
from arena_adapters.envs.reach_expert import ReachExpert

LOCAL_HORIZON = 32


class LocalReachExpert:
    """The expert for the in-process ``local`` adapter: env observation rows in, ``(k, 32, 8)`` out."""

    def __init__(self, horizon: int = LOCAL_HORIZON) -> None:
        self.expert = ReachExpert(horizon)

    def __call__(self, observation: Mapping[str, Any]) -> torch.Tensor:
        state = observation["policy"]
        chunk: torch.Tensor = self.expert.plan(
            observation["camera_obs"]["external_camera_rgb"], state["joint_pos"], state.get("gripper_pos"))
        return chunk.to(state["joint_pos"].device)


class RandomReachPolicy:
    """Uniformly random joint targets and gripper commands: the baseline that should fail.

    A callable for the ``local`` adapter: ``policy(observation) -> (k, 1, 8)``.
    """

    def __init__(self, seed: int = 0) -> None:
        self._generator = torch.Generator().manual_seed(seed)

    def __call__(self, observation: dict[str, Any]) -> torch.Tensor:
        joints = observation["policy"]["joint_pos"]
        k = joints.shape[0]
        sample = torch.rand(k, 1, geometry.ACTION_DIM, generator=self._generator)
        sample[..., : geometry.NUM_JOINTS] = (2 * sample[..., : geometry.NUM_JOINTS] - 1) * geometry.JOINT_LIMIT
        return sample.to(joints.device)


local_expert = LocalReachExpert()
"""For ``arena-adapters eval --adapter local --policy arena_adapters.envs.reach_serving:local_expert``."""
random_policy = RandomReachPolicy()
"""For ``arena-adapters eval --adapter local --policy arena_adapters.envs.reach_serving:random_policy``."""
