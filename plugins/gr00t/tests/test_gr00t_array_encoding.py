"""The two GR00T request encodings of arrays, and ``array_encoding=auto`` choosing one per server.

``nd`` (N1.7-era servers) is the msgpack-numpy form: a msgpack map with the BIN keys ``nd`` (true),
``type`` (the dtype string, a msgpack str), ``kind`` (empty bin), ``shape`` (array of ints) and
``data`` (the raw C-order bytes), in that order. The expected bytes below are built from that
description with plain msgpack, and checked against the PyPI ``msgpack-numpy`` peer as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import pytest
from arena_adapters_gr00t.codec import ND, NPY, decode, encode
from arena_adapters_gr00t.modality import MARKER_N16, MARKER_N17
from arena_adapters_gr00t.server import ReferenceServer
from arena_adapters_gr00t.transport import Gr00tTransport
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import arena_adapters as aa
from arena_adapters.errors import ServerError
from arena_adapters.testing.golden import assert_strictly_equal

Start = Callable[..., ReferenceServer]


def nd_map(array: np.ndarray) -> dict[bytes, Any]:
    """The format description of one array in the nd form."""
    return {b"nd": True, b"type": array.dtype.str, b"kind": b"", b"shape": list(array.shape),
            b"data": array.tobytes()}


def described(value: Any) -> Any:
    """``value`` with every array replaced by its nd map."""
    if isinstance(value, np.ndarray):
        return nd_map(value)
    if isinstance(value, dict):
        return {key: described(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [described(item) for item in value]
    return value


DTYPES = ["|u1", "|i1", "<i2", ">i2", "<u4", "<i8", "<f2", "<f4", ">f4", "<f8", "|b1", "<c8", "<M8[s]", "|S3", "<U2"]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
).flatmap(lambda a: st.sampled_from([a, np.asfortranarray(a), a[..., ::2] if a.ndim else a, a.T]))


def test_one_array_byte_by_byte() -> None:
    array = np.array([0.0, 1.0, 2.0], dtype="<f4")
    expected = (b"\x85" + b"\xc4\x02nd" + b"\xc3" + b"\xc4\x04type" + b"\xa3<f4" + b"\xc4\x04kind" + b"\xc4\x00"
                + b"\xc4\x05shape" + b"\x91\x03" + b"\xc4\x04data" + b"\xc4\x0c" + array.tobytes())
    assert encode(array, arrays=ND) == expected


@settings(max_examples=150, deadline=None)
@given(arrays)
def test_nd_arrays_match_the_format_description_and_the_msgpack_numpy_peer(array: np.ndarray) -> None:
    frame = encode(array, arrays=ND)
    assert frame == msgpack.packb(nd_map(array))
    assert_strictly_equal(decode(frame), np.array(array, order="C"))
    if array.dtype.kind != "M":  # the peer cannot take a buffer of datetimes
        assert frame == msgpack.packb(array, default=msgpack_numpy.encode)
        np.testing.assert_array_equal(msgpack.unpackb(frame, object_hook=msgpack_numpy.decode), array)


def droid_request(batch: int) -> dict[str, Any]:
    image = (np.arange(batch * 18 * 32 * 3) % 251).astype(np.uint8).reshape(batch, 1, 18, 32, 3)
    observation = {
        "video.exterior_image_1_left": image, "video.wrist_image_left": image[:, :, ::-1],
        "state.joint_position": np.linspace(-1, 1, batch * 7, dtype=np.float32).reshape(batch, 1, 7),
        "state.gripper_position": np.full((batch, 1, 1), 0.5, np.float32),
        "annotation.language.language_instruction": ["pick up the cup"] * batch,
    }
    return {"endpoint": "get_action", "data": {"observation": observation, "options": None}, "api_token": "t"}


@pytest.mark.parametrize("batch", [1, 4])
def test_a_whole_request_in_nd_form(batch: int) -> None:
    request = droid_request(batch)
    frame = encode(request, arrays=ND)
    assert frame == msgpack.packb(described(request))
    assert frame == msgpack.packb(request, default=msgpack_numpy.encode)
    assert encode(request, arrays=NPY) != frame  # the default form is unchanged (golden tests pin it)


def test_each_server_era_reads_only_its_own_arrays(start_server: Start) -> None:
    request = droid_request(1)
    for era, other in ((NPY, ND), (ND, NPY)):
        server = ReferenceServer(array_encoding=era)
        reply = decode(server.handle(encode(request, arrays=era)))
        assert reply[0]["action.joint_position"].shape == (1, 32, 7)
        refused = decode(server.handle(encode(request, arrays=other)))
        assert "must be a numpy array. Got <class 'dict'>" in refused["error"]


def test_an_nd_era_server_writes_nd_arrays_and_the_new_marker() -> None:
    server = ReferenceServer(array_encoding=ND)
    configs = msgpack.unpackb(server.handle(encode({"endpoint": "get_modality_config"})))
    assert all(MARKER_N17 in config and MARKER_N16 not in config for config in configs.values())
    reply = msgpack.unpackb(server.handle(encode(droid_request(2), arrays=ND)))
    assert reply[0]["action.joint_position"][b"nd"] is True
    assert reply[0]["action.joint_position"][b"shape"] == [2, 32, 7]




@pytest.mark.parametrize("era", [NPY, ND])
def test_auto_picks_the_encoding_from_the_modality_config(era: str, start_server: Start,
                                                          transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(array_encoding=era)
    transport = transports(server.endpoint, timeout=5)
    assert transport.chosen_encoding is None
    assert transport.ping()["status"] == "ok"
    assert transport.chosen_encoding is None  # a ping shows nothing
    transport.metadata()
    assert transport.chosen_encoding == era
    action = transport.infer(droid_request(2)["data"]["observation"])
    assert action["action.joint_position"].shape == (2, 32, 7)
    assert server.requests_served == 3  # ping, get_modality_config, one get_action: nothing was resent


def undescribed_policy(observation: dict[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(observation["video.wrist_image_left"], np.ndarray):
        raise ValueError(f"Video key 'wrist_image_left' must be a numpy array. Got {type(observation['video.wrist_image_left'])}")
    batch = len(observation["state.joint_position"])
    return {"action.joint_position": np.zeros((batch, 32, 7), np.float32),
            "action.gripper_position": np.zeros((batch, 32, 1), np.float32)}


def test_auto_learns_nd_from_a_refused_first_request(start_server: Start,
                                                     transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(undescribed_policy, array_encoding=ND)
    transport = transports(server.endpoint, timeout=5)
    assert transport.metadata() == {}  # this server describes nothing
    assert transport.chosen_encoding is None
    observation = droid_request(3)["data"]["observation"]
    assert transport.infer(observation)["action.joint_position"].shape == (3, 32, 7)
    assert transport.chosen_encoding == ND
    served = server.requests_served
    transport.infer(observation)
    assert server.requests_served == served + 1  # remembered: one request per call from now on


def test_auto_keeps_npy_when_the_first_request_is_taken(start_server: Start,
                                                        transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(undescribed_policy)
    transport = transports(server.endpoint, timeout=5)
    transport.infer(droid_request(1)["data"]["observation"])
    assert transport.chosen_encoding == NPY
    assert server.requests_served == 1


def test_other_refusals_are_not_resent(start_server: Start, transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(array_encoding=ND)
    transport = transports(server.endpoint, timeout=5, array_encoding=ND)
    observation = droid_request(1)["data"]["observation"]
    observation["state.joint_position"] = observation["state.joint_position"].astype(np.float64)
    with pytest.raises(ServerError, match="must be a numpy array of type np.float32"):
        transport.infer(observation)
    assert server.requests_served == 1


@pytest.mark.parametrize(("era", "forced"), [(ND, NPY), (NPY, ND)])
def test_a_forced_encoding_is_kept(era: str, forced: str, start_server: Start,
                                   transports: Callable[..., Gr00tTransport]) -> None:
    server = start_server(array_encoding=era)
    transport = transports(server.endpoint, timeout=5, array_encoding=forced)
    transport.metadata()
    assert transport.chosen_encoding == forced
    with pytest.raises(ServerError, match="must be a numpy array. Got <class 'dict'>"):
        transport.infer(droid_request(1)["data"]["observation"])


def test_the_gr00t_adapter_against_an_nd_era_server(start_server: Start,
                                                    droid_observation: Callable[..., dict[str, Any]]) -> None:
    server = start_server(array_encoding=ND)
    with aa.load_policy("gr00t", endpoint=server.endpoint, timeout=5) as policy:
        actions = policy.get_action(droid_observation(2))
        assert actions.shape == (2, 8)
    assert server.requests_served == 2  # get_modality_config (which showed the era), one get_action
