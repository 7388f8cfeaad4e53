"""What an action means: declared by the policy side and by the env, compared before the first step.

An action translator may declare the :class:`ActionLayout` of the chunks it returns (its
``action_layout`` attribute); an environment declares the layout it accepts. :func:`check_layouts`
compares the two before any motion and raises :class:`~arena_adapters.errors.ConfigError` saying
which dimensions differ and which option fixes it, instead of a shape error deep inside
``env.step`` (or, worse, a robot moving its gripper the wrong way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from arena_adapters.errors import ConfigError


class ControlMode(str, Enum):
    """How an action vector drives the robot."""

    JOINT_POSITION = "joint_position"
    JOINT_DELTA = "joint_delta"
    JOINT_VELOCITY = "joint_velocity"
    EEF_POSE = "eef_pose"
    EEF_DELTA = "eef_delta"
    OTHER = "other"


class Gripper(str, Enum):
    """What the gripper dimension's values mean."""

    CLOSED_IS_1 = "closed_is_1"
    """0 open, 1 closed (DROID, GR00T's DROID config)."""
    OPEN_IS_1 = "open_is_1"
    """1 open, 0 closed."""
    SIGNED_CLOSE_POSITIVE = "signed_close_positive"
    """-1 open, +1 closed (OpenVLA's normalised gripper after flipping)."""
    SIGNED_OPEN_POSITIVE = "signed_open_positive"
    """+1 open, -1 closed (OpenVLA/LIBERO raw)."""
    NONE = "none"
    """No gripper dimension."""


@dataclass(frozen=True)
class ActionLayout:
    """The meaning of each action dimension.

    Attributes:
        labels: one name per dimension (``"joint_0"``, ..., ``"gripper"``).
        control_mode: how the vector drives the robot.
        units: the units of the non-gripper dimensions (``"rad"``, ``"m"``, ``"normalized"``).
        gripper: the convention of the dimensions labelled ``gripper*``.
    """

    labels: tuple[str, ...]
    control_mode: ControlMode = ControlMode.OTHER
    units: str = ""
    gripper: Gripper = Gripper.NONE

    @property
    def dim(self) -> int:
        """The number of action dimensions."""
        return len(self.labels)

    @property
    def unnamed(self) -> bool:
        """True when the labels say nothing but the position (``dim_0``, ``dim_1``, ...)."""
        return all(label == f"dim_{i}" for i, label in enumerate(self.labels))

    @classmethod
    def of_width(cls, width: int) -> ActionLayout:
        """A layout that says only how many dims there are (``dim_0`` ...)."""
        return cls(tuple(f"dim_{i}" for i in range(width)))

    @property
    def gripper_dims(self) -> tuple[int, ...]:
        """The indices of the gripper dimensions."""
        return tuple(i for i, label in enumerate(self.labels) if label.startswith("gripper"))

    @classmethod
    def of(cls, labels: Sequence[str] | str, control_mode: ControlMode | str = ControlMode.OTHER,
           units: str = "", gripper: Gripper | str = Gripper.NONE) -> ActionLayout:
        """A layout from plain values: ``ActionLayout.of("joint_0..6,gripper", "joint_position", "rad",
        "closed_is_1")``; ``"name_0..6"`` expands to seven labels."""
        if isinstance(labels, str):
            labels = expand_labels(labels)
        return cls(tuple(labels), ControlMode(control_mode), units, Gripper(gripper))

    def describe(self) -> str:
        """One line: ``8 dims (joint_0..joint_6, gripper), joint_position in rad, gripper closed_is_1``."""
        names = ", ".join(self.labels) if self.dim <= 6 else f"{self.labels[0]}..{self.labels[-2]}, {self.labels[-1]}"
        units = f" in {self.units}" if self.units else ""
        gripper = f", gripper {self.gripper.value}" if self.gripper is not Gripper.NONE else ""
        return f"{self.dim} dims ({names}), {self.control_mode.value}{units}{gripper}"


def expand_labels(text: str) -> list[str]:
    """``"joint_0..6,gripper"`` -> ``["joint_0", ..., "joint_6", "gripper"]``."""
    labels: list[str] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        head, dots, last = item.partition("..")
        if dots and "_" in head and head.rsplit("_", 1)[1].isdigit() and last.isdigit():
            stem, first = head.rsplit("_", 1)
            labels.extend(f"{stem}_{i}" for i in range(int(first), int(last) + 1))
        else:
            labels.append(item)
    return labels


def layout_problems(policy: ActionLayout, env: ActionLayout) -> list[str]:
    """What differs between the policy's actions and what the env accepts (``[]``: compatible)."""
    problems = []
    if policy.dim != env.dim:
        problems.append(f"the policy sends {policy.dim} action dims, the env takes {env.dim}")
    elif policy.unnamed or env.unnamed:
        pass  # one side gives the dims no meaning: only their number can be compared
    else:
        differing = [i for i, (a, b) in enumerate(zip(policy.labels, env.labels, strict=True)) if a != b]
        if differing:
            shown = ", ".join(f"{i}: {policy.labels[i]} vs {env.labels[i]}" for i in differing[:6])
            problems.append(f"dims differ in meaning ({shown})")
    if ControlMode.OTHER not in (policy.control_mode, env.control_mode) and policy.control_mode != env.control_mode:
        problems.append(f"control mode {policy.control_mode.value} vs the env's {env.control_mode.value}")
    if policy.units and env.units and policy.units != env.units:
        problems.append(f"units {policy.units} vs the env's {env.units}")
    if (policy.gripper_dims or env.gripper_dims) and Gripper.NONE not in (policy.gripper, env.gripper) and \
            policy.gripper != env.gripper:
        problems.append(f"gripper convention {policy.gripper.value} vs the env's {env.gripper.value}")
    return problems


def check_layouts(policy: ActionLayout | None, env: ActionLayout | None, *, adapter: str, environment: str,
                  fixes: Sequence[str] = ("action_dim", "action_select")) -> None:
    """Raise :class:`ConfigError` when the two declared layouts are not compatible; nothing when
    either side declares none.

    Args:
        fixes: the adapter options that change its action layout, named in the message.
    """
    if policy is None or env is None:
        return
    problems = layout_problems(policy, env)
    if problems:
        options = " or ".join(f"--{name.replace('_', '-')}" for name in fixes) or "another adapter"
        raise ConfigError(
            f"adapter {adapter!r} and environment {environment!r} disagree on actions: {'; '.join(problems)}.\n"
            f"  policy: {policy.describe()}\n  env:    {env.describe()}\n"
            f"  fix: set the adapter's {options} to produce the env's layout"
        )


def action_layout_of(part: object) -> ActionLayout | None:
    """The layout a part declares (its ``action_layout`` attribute), or ``None``."""
    layout = getattr(part, "action_layout", None)
    return layout if isinstance(layout, ActionLayout) else None
