"""Declared action layouts are compared before the first step."""

from __future__ import annotations

import pytest

from arena_adapters.errors import ConfigError
from arena_adapters.layouts import ActionLayout, ControlMode, Gripper, check_layouts, expand_labels, layout_problems

DROID = ActionLayout.of("joint_0..6,gripper", "joint_position", "rad", "closed_is_1")


def test_labels_expand_and_describe() -> None:
    assert expand_labels("joint_0..2,gripper") == ["joint_0", "joint_1", "joint_2", "gripper"]
    assert DROID.dim == 8 and DROID.gripper_dims == (7,) and DROID.control_mode is ControlMode.JOINT_POSITION
    assert DROID.describe() == "8 dims (joint_0..joint_6, gripper), joint_position in rad, gripper closed_is_1"


def test_a_width_mismatch_names_both_widths_and_the_fix() -> None:
    openvla = ActionLayout.of("eef_0..5,gripper", "eef_delta", "normalized", "signed_open_positive")
    with pytest.raises(ConfigError) as caught:
        check_layouts(openvla, DROID, adapter="openvla", environment="reach")
    message = str(caught.value)
    assert "the policy sends 7 action dims, the env takes 8" in message
    assert "control mode eef_delta vs the env's joint_position" in message
    assert "--action-dim or --action-select" in message


def test_same_width_but_other_meaning_or_gripper_convention_is_refused() -> None:
    flipped = ActionLayout.of("joint_0..6,gripper", "joint_position", "rad", Gripper.OPEN_IS_1)
    assert layout_problems(flipped, DROID) == ["gripper convention open_is_1 vs the env's closed_is_1"]
    shuffled = ActionLayout.of("gripper,joint_0..6", "joint_position", "rad", "closed_is_1")
    assert "dims differ in meaning (0: gripper vs joint_0" in layout_problems(shuffled, DROID)[0]


def test_compatible_or_undeclared_layouts_pass() -> None:
    check_layouts(DROID, ActionLayout.of("joint_0..6,gripper", "joint_position", "rad", "closed_is_1"),
                  adapter="gr00t", environment="reach")
    check_layouts(None, DROID, adapter="x", environment="y")
    assert layout_problems(ActionLayout.of("joint_0..6,gripper"), DROID) == []  # OTHER mode, no units: no claim


def test_eval_refuses_a_declared_layout_that_does_not_fit_before_the_first_query() -> None:
    import arena_adapters as aa
    from arena_adapters.envs.reach import ReachEnv
    from arena_adapters.evaluation import evaluate

    class SevenWide:
        action_layout = ActionLayout.of("eef_0..5,gripper", "eef_delta")

        def translate(self, reply: object, query: object) -> object:
            raise AssertionError("no query may be made")

    with aa.load_policy("local", policy=lambda observation: None) as policy:
        policy.action_translator = SevenWide()  # type: ignore[assignment]
        with pytest.raises(ConfigError, match="the policy sends 7 action dims, the env takes 8"):
            evaluate(policy, ReachEnv(num_envs=2), 2)
        assert policy.stats.queries == 0
