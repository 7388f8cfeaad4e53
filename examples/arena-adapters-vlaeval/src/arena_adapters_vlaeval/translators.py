"""Isaac Lab Arena DROID observations -> vla-eval observations, and ACTION replies -> action chunks.

The observation of one env follows vla-eval's convention (``vla_eval.types.Observation``)::

    {"images": {"exterior_image_1_left": uint8 (H, W, 3), "wrist_image_left": uint8 (H, W, 3)},
     "state": float32 (8,),            # 7 joint positions + gripper position
     "task_description": str}

read from ``camera_obs.external_camera_rgb``, ``camera_obs.wrist_camera_rgb`` (resized with padding
to ``image_size``), ``policy.joint_pos`` (N, 7) and ``policy.gripper_pos`` (N, 1). Each queried env
becomes one message ``{"env_id": int, "task": {...}, "observation": {...}}`` for its own session.

An ACTION payload carries ``actions``: one action ``(D,)`` (a server that chunks server-side, or a
single-step model) or a chunk ``(H, D)``; the replies of the queried envs become ``(k, H, D)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arena_adapters import plugin as ap

EXTERIOR = "camera_obs.external_camera_rgb"
WRIST = "camera_obs.wrist_camera_rgb"
JOINTS = "policy.joint_pos"
GRIPPER = "policy.gripper_pos"
IMAGE_KEYS = {"exterior_image_1_left": EXTERIOR, "wrist_image_left": WRIST}
DEFAULT_IMAGE_SIZE = (224, 224)

DROID_LAYOUT = ap.ActionLayout.of("joint_0..6,gripper", "joint_position", "rad", "closed_is_1")
"""DROID joint-position actions: 7 joint targets in radians and a gripper command, 1 closed."""


class Observations:
    """Per-env vla-eval observations of the queried envs (see the module docstring).

    Args:
        image_size: ``(height, width)`` the cameras are resized to, with padding.
        benchmark_task: the task name sent in ``EPISODE_START`` (with the instruction).
    """

    def __init__(self, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                 benchmark_task: str = "isaaclab-arena") -> None:
        height, width = (int(n) for n in image_size)
        if height < 1 or width < 1:
            raise ap.ConfigError(f"option 'image_size': expected (height, width) >= 1, got {image_size!r}")
        self.image_size = (height, width)
        self.benchmark_task = benchmark_task

    def translate(self, observation: ap.Observation, query: ap.Query) -> list[dict[str, Any]]:
        images = {}
        for key, path in IMAGE_KEYS.items():
            camera = ap.require_tensor(ap.lookup(observation, path), path, dtypes=(torch.uint8,),
                                       shape=("num_envs", None, None, 3))
            images[key] = _owned(ap.resize_with_pad(ap.select_rows(camera, query), *self.image_size))
        joints = ap.require_tensor(ap.lookup(observation, JOINTS), JOINTS, shape=("num_envs", 7))
        gripper = ap.require_tensor(ap.lookup(observation, GRIPPER), GRIPPER, shape=("num_envs", 1))
        state = torch.cat([ap.select_rows(joints, query), ap.select_rows(gripper, query)], dim=1)
        states = _owned(state.to(torch.float32))
        instructions = query.instructions or ("",) * query.size
        messages = []
        for row, env_id in enumerate(query.env_ids_host.tolist()):
            text = instructions[row]
            messages.append({
                "env_id": int(env_id),
                "task": {"name": self.benchmark_task, "description": text, "env_id": int(env_id)},
                "observation": {
                    "images": {key: batch[row] for key, batch in images.items()},
                    "state": states[row],
                    "task_description": text,
                },
            })
        return messages


class Actions:
    """ACTION payloads -> a float32 ``(k, H, action_dim)`` chunk on the env device.

    Args:
        action_dim: the action width the server must send (8: DROID joints + gripper, the declared
            :data:`DROID_LAYOUT`; another width declares unlabelled dims).
    """

    def __init__(self, action_dim: int = DROID_LAYOUT.dim) -> None:
        if action_dim < 1:
            raise ap.ConfigError(f"option 'action_dim': expected an int >= 1, got {action_dim!r}")
        self.action_dim = int(action_dim)
        self.action_layout = DROID_LAYOUT if action_dim == DROID_LAYOUT.dim else ap.ActionLayout.of(
            [f"a_{i}" for i in range(action_dim)])

    def translate(self, reply: Any, query: ap.Query) -> torch.Tensor:
        if not isinstance(reply, list) or len(reply) != query.size:
            raise ap.ActionError(f"expected {query.size} ACTION payloads (one per env), got {ap.describe(reply)}")
        env_ids = query.env_ids_host.tolist()
        chunks = []
        for env_id, payload in zip(env_ids, reply, strict=True):
            actions = payload.get("actions") if isinstance(payload, dict) else None
            if not isinstance(actions, np.ndarray) or actions.ndim not in (1, 2) or actions.dtype.kind not in "biuf":
                raise ap.ActionError(f"env {env_id}: the ACTION payload must hold 'actions' (D,) or (H, D) numbers, "
                                     f"got {ap.describe(payload)}")
            chunk = actions[None, :] if actions.ndim == 1 else actions
            if chunk.shape[1] != self.action_dim or chunk.shape[0] < 1:
                raise ap.ActionError(f"env {env_id}: actions {list(actions.shape)}, expected (H, {self.action_dim}) "
                                     f"(set the adapter's action_dim option to the server's action width)")
            chunks.append(chunk)
        horizons = {chunk.shape[0] for chunk in chunks}
        if len(horizons) > 1:
            raise ap.ActionError(f"envs {env_ids} got chunks of different lengths {sorted(horizons)}")
        return torch.from_numpy(np.stack(chunks).astype(np.float32, copy=False)).to(query.device)


def _owned(tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    """A host numpy array that owns its memory (not a view of the tensor).

    The per-env messages are sent from the transport's daemon threads, which may drop the last
    reference to them; freeing a tensor-backed array there releases the GIL inside torch, and at
    interpreter exit a daemon thread that waits for the GIL is ended with a forced unwind that
    aborts the process ("terminate called without an active exception").
    """
    return np.array(tensor.cpu().numpy(), copy=True)
