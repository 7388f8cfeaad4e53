"""``reach``: a vectorized torch environment with Isaac Lab Arena DROID-shaped observations.

A two-link arm moves its end effector over a table. Each episode asks for ``num_targets`` grasps in
turn: a red target drifts over the table at ``target_speed`` (bouncing off the edges of its range);
closing the gripper on it counts a grasp and a new target appears elsewhere, moving in a new
direction; the gripper must open again before the next grasp. Closing the gripper anywhere else
ends the episode as a failure, as does reaching ``max_episode_length`` steps; the last grasp ends it
as a success. The target is only visible in the camera images, so an agent has to look, and since
it moves, a plan made from an old image goes stale: an expert that replays a long action chunk
closes where the target was, not where it is. Targets appear at random places, so episodes last
different numbers of steps (about 50-180, 80-120 on average, for the scripted expert replanning
every 8 steps with the defaults) and end out of phase across envs.

Observations (``N = num_envs``, on ``device``)::

    obs["policy"]["joint_pos"]                 float32 (N, 7)   joints 0-1 move the arm, 2-6 are free
    obs["policy"]["gripper_pos"]               float32 (N, 1)   0 open .. 1 closed
    obs["camera_obs"]["external_camera_rgb"]   uint8 (N, H, W, 3)  the table seen from above
    obs["camera_obs"]["wrist_camera_rgb"]      uint8 (N, H, W, 3)  a zoomed view around the gripper

Action ``(N, 8)``: 7 joint position targets (radians) and a gripper command in [0, 1]. Joints move
towards their targets at most :data:`JOINT_SPEED` per step, the gripper :data:`GRIPPER_SPEED`.
With ``num_targets=1`` and ``target_speed=0`` the task is a single static reach-and-grasp.

The contract follows Isaac Lab's ``ManagerBasedRLEnv``: ``reset() -> (obs, extras)``,
``step(actions) -> (obs, reward, terminated, truncated, extras)`` with finished envs reset inside
``step()`` (the returned observation is the first of their new episode). ``extras["success"]``
tells which of the finished episodes succeeded. Camera images are drawn into two persistent buffers
used in turn (as camera sensors reuse theirs): an observation's images stay valid during the next
``step()`` and are overwritten by the one after; clone them to keep them longer.
Everything is batched tensor code: no Python loop
over envs, no device-to-host synchronisation, images drawn as small patches (see
:mod:`arena_adapters.envs.drawing`). The geometry lives in :mod:`arena_adapters.envs.reach_geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from arena_adapters.envs.base import Extras, Observation
from arena_adapters.envs.drawing import Canvas
from arena_adapters.envs.reach_geometry import (
    ACTION_DIM,
    ARM_BASE,
    EFFECTOR_COLOR,
    EFFECTOR_RING,
    FINGER_COLOR,
    FLOOR_COLOR,
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    GRIPPER_SPEED,
    HOME_POINT,
    JOINT_LIMIT,
    JOINT_SPEED,
    LINK_LENGTHS,
    NUM_JOINTS,
    SUCCESS_RADIUS,
    TABLE_COLOR,
    TABLE_HALF_SIZE,
    TARGET_COLOR,
    TARGET_HALF_RANGE,
    TARGET_RADIUS,
    TASK_DESCRIPTION,
    WRIST_VIEW_WIDTH,
    forward_kinematics,
    inverse_kinematics,
)
from arena_adapters.errors import ConfigError
from arena_adapters.options import Option

__all__ = [
    "ACTION_DIM", "ARM_BASE", "GRIPPER_CLOSED", "GRIPPER_OPEN", "GRIPPER_SPEED", "JOINT_LIMIT", "JOINT_SPEED",
    "LINK_LENGTHS", "NUM_JOINTS", "SUCCESS_RADIUS", "TABLE_COLOR", "TABLE_HALF_SIZE", "TARGET_HALF_RANGE",
    "TARGET_RADIUS", "ReachEnv", "ReachEnvCfg", "TableLayout", "forward_kinematics", "inverse_kinematics",
]

DEFAULT_NUM_TARGETS = 5
DEFAULT_TARGET_SPEED = 0.006
"""Table units per step (the arm's end effector moves up to about 0.09)."""
DEFAULT_MAX_EPISODE_LENGTH = 400
_SPAWN_CANDIDATES = 3


@dataclass(frozen=True)
class TableLayout:
    """Where the table is in an external camera image of a given size.

    Pixel ``x = center_x + u * scale``, ``y = center_y - v * scale`` (``v`` points away from the
    camera, up in the image).
    """

    height: int
    width: int
    center_x: float
    center_y: float
    scale: float

    @staticmethod
    def of(height: int, width: int) -> TableLayout:
        """The layout used by :class:`ReachEnv` for ``height x width`` images."""
        scale = min(0.8 * width / (2 * TABLE_HALF_SIZE[0]), 0.85 * height / (2 * TABLE_HALF_SIZE[1]))
        return TableLayout(height, width, width / 2, height / 2, scale)

    def to_pixels(self, points: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` table points ``(u, v)`` -> pixel coordinates ``(x, y)``."""
        x = self.center_x + points[..., 0] * self.scale
        y = self.center_y - points[..., 1] * self.scale
        return torch.stack((x, y), dim=-1)


@dataclass
class ReachEnvCfg:
    """The configuration of a :class:`ReachEnv` (``env.cfg``, as in Isaac Lab)."""

    num_envs: int = 16
    device: str = "cpu"
    image_height: int = 180
    image_width: int = 320
    max_episode_length: int = DEFAULT_MAX_EPISODE_LENGTH
    num_targets: int = DEFAULT_NUM_TARGETS
    target_speed: float = DEFAULT_TARGET_SPEED
    seed: int | None = 0
    task_description: str = TASK_DESCRIPTION


class ReachEnv:
    """The ``reach`` environment (see the module docstring).

    Args:
        num_envs: number of parallel envs.
        device: torch device of every tensor (``"cpu"``, ``"cuda:0"``).
        image_height, image_width: camera image size (DROID cameras are 180 x 320).
        max_episode_length: steps before an episode is truncated.
        num_targets: grasps an episode needs to succeed.
        target_speed: how far a target drifts per step (table units; 0 for static targets).
        seed: seed of the env's random generator (``None``: nondeterministic).
    """

    OPTIONS: tuple[Option, ...] = (
        Option("image_height", int, 180, "camera image height", minimum=16),
        Option("image_width", int, 320, "camera image width", minimum=16),
        Option("max_episode_length", int, DEFAULT_MAX_EPISODE_LENGTH, "steps before an episode is truncated",
               minimum=1),
        Option("num_targets", int, DEFAULT_NUM_TARGETS, "grasps an episode needs to succeed", minimum=1),
        Option("target_speed", float, DEFAULT_TARGET_SPEED, "target drift per step (table units; 0: static)",
               minimum=0.0),
        Option("seed", int, 0, "seed of the env's random generator"),
    )

    def __init__(
        self,
        num_envs: int = 16,
        device: str | torch.device = "cpu",
        *,
        image_height: int = 180,
        image_width: int = 320,
        max_episode_length: int = DEFAULT_MAX_EPISODE_LENGTH,
        num_targets: int = DEFAULT_NUM_TARGETS,
        target_speed: float = DEFAULT_TARGET_SPEED,
        seed: int | None = 0,
    ) -> None:
        if num_envs < 1:
            raise ConfigError(f"option 'num_envs': expected an int >= 1, got {num_envs!r}")
        if num_targets < 1:
            raise ConfigError(f"option 'num_targets': expected an int >= 1, got {num_targets!r}")
        if not target_speed >= 0:
            raise ConfigError(f"option 'target_speed': expected a float >= 0, got {target_speed!r}")
        self.cfg = ReachEnvCfg(
            num_envs=num_envs,
            device=str(device),
            image_height=image_height,
            image_width=image_width,
            max_episode_length=max_episode_length,
            num_targets=num_targets,
            target_speed=float(target_speed),
            seed=seed,
        )
        self.num_envs = num_envs
        self.device = str(torch.device(device))
        self._device = torch.device(device)
        self.max_episode_length = max_episode_length
        self.layout = TableLayout.of(image_height, image_width)
        self._generator = torch.Generator(device=self._device)
        self._seed(seed)
        self.joint_pos = torch.zeros(num_envs, NUM_JOINTS, device=self._device)
        self.gripper_pos = torch.zeros(num_envs, 1, device=self._device)
        self.target = torch.zeros(num_envs, 2, device=self._device)
        self.target_velocity = torch.zeros(num_envs, 2, device=self._device)
        self.grasps = torch.zeros(num_envs, dtype=torch.long, device=self._device)
        """Targets grasped so far in each env's episode."""
        self.armed = torch.ones(num_envs, dtype=torch.bool, device=self._device)
        """Whether the gripper has opened since the last grasp (a closing gripper then attempts one)."""
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long, device=self._device)
        self._target_range = torch.tensor(TARGET_HALF_RANGE, device=self._device)
        wrist_background = torch.tensor(TABLE_COLOR, dtype=torch.uint8, device=self._device).expand(
            image_height, image_width, 3
        )
        self._external_canvas = Canvas(self._draw_external_background(), num_envs)
        self._wrist_canvas = Canvas(wrist_background.contiguous(), num_envs)
        self._home = inverse_kinematics(torch.tensor(HOME_POINT, device=self._device))

    # ------------------------------------------------------------------ Isaac Lab contract

    @property
    def unwrapped(self) -> ReachEnv:
        """This env (Isaac Lab envs are reached through ``env.unwrapped`` behind wrappers)."""
        return self

    @property
    def action_dim(self) -> int:
        """The action width: 7 joint targets + gripper."""
        return ACTION_DIM

    def reset(
        self, seed: int | None = None, env_ids: torch.Tensor | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, Extras]:
        """Start new episodes (all envs, or ``env_ids``) and return ``(obs, extras)``."""
        if seed is not None:
            self._seed(seed)
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self._device)
        if env_ids is not None:
            mask = torch.zeros_like(mask)
            mask[env_ids.to(self._device)] = True
        self._reset_where(mask)
        return self._observe(), {}

    def step(self, actions: torch.Tensor) -> tuple[Observation, torch.Tensor, torch.Tensor, torch.Tensor, Extras]:
        """Apply ``(num_envs, 8)`` actions for one step; finished envs restart inside.

        Returns:
            ``(obs, reward, terminated, truncated, extras)``; ``reward`` is 1 for each grasp,
            ``extras["success"]`` and ``extras["episode_length"]`` describe the episodes that
            ended in this step, ``extras["time_outs"]`` equals ``truncated``.
        """
        if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != (self.num_envs, ACTION_DIM):
            shape = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
            raise ValueError(f"reach: expected actions of shape ({self.num_envs}, {ACTION_DIM}), got {shape}")
        actions = torch.nan_to_num(actions.to(self._device, torch.float32))
        joint_targets = actions[:, :NUM_JOINTS].clamp(-JOINT_LIMIT, JOINT_LIMIT)
        # out of place: state stays usable whether or not it was created under torch.inference_mode
        self.joint_pos = self.joint_pos + (joint_targets - self.joint_pos).clamp(-JOINT_SPEED, JOINT_SPEED)
        gripper_command = actions[:, NUM_JOINTS:].clamp(0.0, 1.0)
        self.gripper_pos = self.gripper_pos + (gripper_command - self.gripper_pos).clamp(-GRIPPER_SPEED, GRIPPER_SPEED)
        self.episode_length_buf = self.episode_length_buf + 1
        self._move_targets()

        distance = torch.linalg.vector_norm(forward_kinematics(self.joint_pos) - self.target, dim=-1)
        gripper = self.gripper_pos[:, 0]
        grasp = self.armed & (gripper >= GRIPPER_CLOSED)
        hit = grasp & (distance <= SUCCESS_RADIUS)
        self.grasps = self.grasps + hit.long()
        self.armed = (self.armed & ~grasp) | (gripper <= GRIPPER_OPEN)
        success = self.grasps >= self.cfg.num_targets
        terminated = (grasp & ~hit) | success
        truncated = (self.episode_length_buf >= self.max_episode_length) & ~terminated
        done = terminated | truncated
        extras: Extras = {
            "success": success,
            "time_outs": truncated,
            "episode_length": torch.where(done, self.episode_length_buf, 0),
        }
        reward = hit.float()
        self._new_targets_where(hit & ~done)
        self._reset_where(done)
        return self._observe(), reward, terminated, truncated, extras

    def close(self) -> None:
        """Nothing to release."""

    # ---------------------------------------------------------------------------- internals

    def _seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)

    def _uniform(self, *shape: int, low: float, high: float) -> torch.Tensor:
        values = torch.rand(*shape, generator=self._generator, device=self._device)
        return low + (high - low) * values

    def _move_targets(self) -> None:
        """Drift every target by its velocity; a target leaving its range bounces back."""
        moved = self.target + self.target_velocity
        outside = moved.abs() > self._target_range
        self.target_velocity = torch.where(outside, -self.target_velocity, self.target_velocity)
        self.target = torch.maximum(torch.minimum(moved, self._target_range), -self._target_range)

    def _new_targets_where(self, mask: torch.Tensor) -> None:
        """A new target where ``mask``: the farthest from the end effector of a few random places
        (so the gripper has time to open before it gets there), moving in a random direction.
        Draws for every env so the random stream does not depend on which envs changed."""
        n = self.num_envs
        candidates = torch.stack(
            (
                self._uniform(n, _SPAWN_CANDIDATES, low=-TARGET_HALF_RANGE[0], high=TARGET_HALF_RANGE[0]),
                self._uniform(n, _SPAWN_CANDIDATES, low=-TARGET_HALF_RANGE[1], high=TARGET_HALF_RANGE[1]),
            ),
            dim=-1,
        )
        distance = torch.linalg.vector_norm(candidates - forward_kinematics(self.joint_pos).unsqueeze(1), dim=-1)
        farthest = distance.argmax(dim=1)
        target = candidates[torch.arange(n, device=self._device), farthest]
        heading = self._uniform(n, low=-math.pi, high=math.pi)
        velocity = self.cfg.target_speed * torch.stack((torch.cos(heading), torch.sin(heading)), dim=-1)
        rows = mask.unsqueeze(1)
        self.target = torch.where(rows, target, self.target)
        self.target_velocity = torch.where(rows, velocity, self.target_velocity)

    def _reset_where(self, mask: torch.Tensor) -> None:
        """Restart the episodes of envs where ``mask`` (vectorized)."""
        joints = self._uniform(self.num_envs, NUM_JOINTS, low=-0.3, high=0.3)
        joints[:, :2] += self._home
        rows = mask.unsqueeze(1)
        self.joint_pos = torch.where(rows, joints, self.joint_pos)
        self._new_targets_where(mask)
        self.gripper_pos = torch.where(rows, 0.0, self.gripper_pos)
        self.grasps = torch.where(mask, 0, self.grasps)
        self.armed = self.armed | mask
        self.episode_length_buf = torch.where(mask, 0, self.episode_length_buf)

    def _draw_external_background(self) -> torch.Tensor:
        layout = self.layout
        ys = torch.arange(layout.height, device=self._device, dtype=torch.float32) + 0.5
        xs = torch.arange(layout.width, device=self._device, dtype=torch.float32) + 0.5
        inside_x = (xs - layout.center_x).abs() <= TABLE_HALF_SIZE[0] * layout.scale
        inside_y = (ys - layout.center_y).abs() <= TABLE_HALF_SIZE[1] * layout.scale
        table = inside_y.unsqueeze(1) & inside_x.unsqueeze(0)
        floor = torch.tensor(FLOOR_COLOR, dtype=torch.uint8, device=self._device)
        wood = torch.tensor(TABLE_COLOR, dtype=torch.uint8, device=self._device)
        return torch.where(table.unsqueeze(-1), wood, floor)

    def _observe(self) -> Observation:
        effector = forward_kinematics(self.joint_pos)
        return {
            "policy": {"joint_pos": self.joint_pos.clone(), "gripper_pos": self.gripper_pos.clone()},
            "camera_obs": {
                "external_camera_rgb": self._render_external(effector),
                "wrist_camera_rgb": self._render_wrist(effector),
            },
        }

    def _render_external(self, effector: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        canvas = self._external_canvas
        canvas.new_frame()
        inner, outer = EFFECTOR_RING
        canvas.disks(layout.to_pixels(effector), outer * layout.scale, EFFECTOR_COLOR,
                     inner_radius=inner * layout.scale)
        canvas.disks(layout.to_pixels(self.target), TARGET_RADIUS * layout.scale, TARGET_COLOR)
        return canvas.images

    def _render_wrist(self, effector: torch.Tensor) -> torch.Tensor:
        height, width = self.cfg.image_height, self.cfg.image_width
        scale = width / WRIST_VIEW_WIDTH
        canvas = self._wrist_canvas
        canvas.new_frame()
        offset = (self.target - effector) * scale
        center = torch.stack((width / 2 + offset[:, 0], height / 2 - offset[:, 1]), dim=-1)
        canvas.disks(center, TARGET_RADIUS * scale, TARGET_COLOR)
        finger_height, finger_width = max(1, int(0.3 * height)), max(1, int(0.06 * width))
        gap = width * (0.22 - 0.14 * self.gripper_pos[:, 0])
        top = torch.full_like(gap, float(height - finger_height))
        left = torch.stack((width / 2 - gap - finger_width, top), dim=-1)
        right = torch.stack((width / 2 + gap, top), dim=-1)
        canvas.rectangles(left, finger_height, finger_width, FINGER_COLOR)
        canvas.rectangles(right, finger_height, finger_width, FINGER_COLOR)
        return canvas.images
