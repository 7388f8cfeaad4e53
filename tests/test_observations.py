"""Observation look-ups and checks: every error names the key, the expectation and what arrived."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arena_adapters.errors import ConfigError, ObservationError
from arena_adapters.observations import batch_size_and_device, lookup, require_batch, require_tensor
from arena_adapters.options import Option, reject_unknown, resolve_options

OBS = {"policy": {"joint_pos": torch.zeros(4, 7)}, "camera_obs": {"wrist": torch.zeros(4, 8, 8, 3, dtype=torch.uint8)}}


def test_lookup_by_dotted_or_slashed_path() -> None:
    assert lookup(OBS, "policy.joint_pos") is OBS["policy"]["joint_pos"]
    assert lookup(OBS, "camera_obs/wrist") is OBS["camera_obs"]["wrist"]


def test_lookup_missing_key_lists_what_exists() -> None:
    with pytest.raises(ObservationError, match=r"'policy.gripper_pos' is missing: policy has keys \['joint_pos'\]"):
        lookup(OBS, "policy.gripper_pos")
    with pytest.raises(ObservationError, match=r"'policy.joint_pos' is a Tensor, not a dict"):
        lookup(OBS, "policy.joint_pos.x")


def test_require_tensor_messages() -> None:
    wrist = OBS["camera_obs"]["wrist"]
    assert require_tensor(wrist, "wrist", dtypes=[torch.uint8], shape=["num_envs", None, None, 3]) is wrist
    with pytest.raises(ObservationError, match=r"'wrist': expected float32 \(num_envs, 8, 8, 3\), got uint8 \(4, 8, 8, 3\) on cpu"):
        require_tensor(wrist, "wrist", dtypes=[torch.float32], shape=["num_envs", 8, 8, 3])
    with pytest.raises(ObservationError, match=r"expected uint8 \(num_envs, \?, \?, 4\), got uint8 \(4, 8, 8, 3\)"):
        require_tensor(wrist, "wrist", dtypes=[torch.uint8], shape=["num_envs", None, None, 4])
    with pytest.raises(ObservationError, match=r"expected a torch.Tensor uint8, got uint8 \(2,\) \(ndarray\)"):
        require_tensor(np.zeros(2, np.uint8), "wrist", dtypes=[torch.uint8])
    with pytest.raises(ObservationError, match=r"expected num_envs=5 rows first, got float32 \(4, 7\)"):
        require_batch(OBS["policy"]["joint_pos"], "policy.joint_pos", 5)


def test_batch_size_and_device() -> None:
    assert batch_size_and_device(OBS) == (4, torch.device("cpu"))


def test_options_convert_strings_and_report_errors() -> None:
    declared = [Option("timeout", float, 30.0), Option("flat", bool, True), Option("name", str)]
    assert resolve_options(declared, {"timeout": "2.5", "flat": "no", "name": "x"}, "t") == {
        "timeout": 2.5,
        "flat": False,
        "name": "x",
    }
    with pytest.raises(ConfigError, match=r"option 'timeout' \(for t\): expected float, got str 'soon'"):
        resolve_options(declared, {"timeout": "soon", "name": "x"}, "t")
    with pytest.raises(ConfigError, match=r"option 'name' \(for t\) is required"):
        resolve_options(declared, {}, "t")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['tiemout'\] for t; valid options: \['flat', 'name', 'timeout'\]"):
        reject_unknown(["tiemout"], [o.name for o in declared], "t")
    with pytest.raises(ConfigError, match=r"expected int, got bool True"):
        Option("n", int, 1).convert(True)
