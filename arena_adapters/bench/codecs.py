"""Wire codecs vs the upstream way of writing the same bytes, with a memory-copy floor.

Each plugin's codec is imported lazily; a plugin (or its upstream peer library) that is not
installed is skipped. Before timing, ours and the baseline are checked to write the same bytes.

- ``openpi``: the DROID observation openpi's example client sends (two 224x224x3 images, joints,
  gripper, prompt; 301 KB) and its reply, vs ``openpi_client.msgpack_numpy``. Our decoder builds
  a message whose layout it has seen before from that layout's skeleton, as in a real stream; the
  "first of its layout" row shows the one-pass read without it.
- ``gr00t``: the flat DROID ``get_action`` request (two 180x320x3 images per env) for 1 and 16 envs,
  vs the upstream serializer's work (``np.save`` per array inside msgpack, then ``np.load``),
  re-enacted here.
- ``openvla``: a 224x224x3 request, vs PyPI ``json_numpy``.

``floor_s`` (extra) is a copy of the message's bytes into a new ``bytes`` object in the same run:
what any encoder that returns the message must at least do.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from arena_adapters.bench.rows import BenchSettings, Row, SectionSkipped
from arena_adapters.bench.timing import interleaved_medians


def _rows(
    codec: str, cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]], baseline: str,
    message: bytes, settings: BenchSettings, repeat: int,
) -> list[Row]:
    view = memoryview(message)

    def floor() -> bytes:
        return bytes(view)

    repeat = max(1, repeat // 20) if settings.quick else repeat
    runs = 3 if settings.quick else 9
    rows = []
    for name, ours, theirs in cases:
        times = interleaved_medians({"ours": ours, "baseline": theirs, "floor": floor}, repeat, runs)
        rows.append(Row("codecs", f"{codec} {name}", times["ours"], times["baseline"], baseline,
                        {"floor_s": times["floor"], "message_bytes": len(message)}))
    return rows


# ------------------------------------------------------------------------------------ openpi

def droid_observation() -> dict[str, Any]:
    """The observation openpi's DROID example client sends."""
    image = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
    return {
        "observation/exterior_image_1_left": image,
        "observation/wrist_image_left": image.copy(),
        "observation/joint_position": np.linspace(-1, 1, 7),
        "observation/gripper_position": np.array([0.5]),
        "prompt": "pick up the cup",
    }


def droid_reply() -> dict[str, Any]:
    """A DROID reply: a (10, 8) action chunk and the server's timings."""
    return {
        "actions": np.linspace(-1, 1, 80, dtype=np.float32).reshape(10, 8),
        "policy_timing": {"infer_ms": 12.5},
        "server_timing": {"infer_ms": 13.25, "prev_total_ms": 50.75},
    }


def openpi_rows(settings: BenchSettings) -> list[Row]:
    """openpi codec rows (raises ImportError when the plugin or openpi-client is missing)."""
    from arena_adapters_openpi.codec import decode, encode, forget_layouts
    from openpi_client import msgpack_numpy

    observation, reply = droid_observation(), droid_reply()
    packed, packed_reply = encode(observation), encode(reply)
    assert packed == msgpack_numpy.packb(observation), "openpi: codecs disagree on the observation bytes"
    assert packed_reply == msgpack_numpy.packb(reply), "openpi: codecs disagree on the reply bytes"
    packer = msgpack_numpy.Packer()

    def decode_first(data: bytes) -> Any:
        forget_layouts()
        return decode(data)

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("DROID observation pack", lambda: encode(observation), lambda: packer.pack(observation)),
        ("DROID observation unpack", lambda: decode(packed), lambda: msgpack_numpy.unpackb(packed)),
        ("DROID observation unpack, first of its layout", lambda: decode_first(packed),
         lambda: msgpack_numpy.unpackb(packed)),
        ("DROID observation pack+unpack", lambda: decode(encode(observation)),
         lambda: msgpack_numpy.unpackb(packer.pack(observation))),
        ("DROID reply pack+unpack", lambda: decode(encode(reply)),
         lambda: msgpack_numpy.unpackb(packer.pack(reply))),
    ]
    return _rows("openpi", cases, "openpi_client.msgpack_numpy", packed, settings, 400)


# ------------------------------------------------------------------------------------- gr00t

def gr00t_upstream_encode(value: Any) -> bytes:
    """msgpack with ``np.save`` for every array, as the upstream GR00T serializer does."""
    import msgpack

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, obj, allow_pickle=False)
            return {"__ndarray_class__": True, "as_npy": buffer.getvalue()}
        return obj

    return msgpack.packb(value, default=default)  # type: ignore[no-any-return]


def gr00t_upstream_decode(frame: bytes) -> Any:
    """msgpack with ``np.load`` for every array, as the upstream GR00T deserializer does."""
    import msgpack

    def hook(obj: dict[str, Any]) -> Any:
        if "__ndarray_class__" in obj:
            return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
        return obj

    return msgpack.unpackb(frame, object_hook=hook)


def gr00t_request(batch: int) -> dict[str, Any]:
    """The flat DROID ``get_action`` request for ``batch`` envs."""
    image = (np.arange(batch * 180 * 320 * 3) % 251).astype(np.uint8).reshape(batch, 1, 180, 320, 3)
    observation = {
        "video.exterior_image_1_left": image,
        "video.wrist_image_left": image[:, :, ::-1].copy(),
        "state.joint_position": np.linspace(-1, 1, batch * 7, dtype=np.float32).reshape(batch, 1, 7),
        "state.gripper_position": np.full((batch, 1, 1), 0.5, np.float32),
        "annotation.language.language_instruction": ["pick up the cup"] * batch,
    }
    return {"endpoint": "get_action", "data": {"observation": observation, "options": None}}


def gr00t_rows(settings: BenchSettings) -> list[Row]:
    """GR00T codec rows (raises ImportError when the plugin is missing)."""
    from arena_adapters_gr00t.codec import decode, encode

    rows = []
    for batch in (1,) if settings.quick else (1, 16):
        request = gr00t_request(batch)
        frame = gr00t_upstream_encode(request)
        assert encode(request) == frame, "gr00t: our request bytes differ from the upstream way"
        def ours(r: dict[str, Any] = request) -> Any:
            return decode(encode(r))

        def upstream(r: dict[str, Any] = request) -> Any:
            return gr00t_upstream_decode(gr00t_upstream_encode(r))

        cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            (f"request encode+decode, {batch} env(s)", ours, upstream),
        ]
        rows += _rows("gr00t", cases, "np.save in msgpack + np.load (upstream's work)", frame, settings,
                      max(10, 100 // batch))
    return rows


# ----------------------------------------------------------------------------------- openvla

def openvla_rows(settings: BenchSettings) -> list[Row]:
    """OpenVLA codec rows (raises ImportError when the plugin or json_numpy is missing)."""
    import json_numpy
    from arena_adapters_openvla import codec

    image = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
    request = {"image": image, "instruction": "pick up the cup", "unnorm_key": "bridge_orig"}
    body = codec.encode(request)
    assert body == json_numpy.dumps(request).encode(), "openvla: codecs disagree on the request bytes"
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("request encode+decode", lambda: codec.decode(codec.encode(request)),
         lambda: json_numpy.loads(json_numpy.dumps(request).encode())),
    ]
    return _rows("openvla", cases, "json_numpy", body, settings, 100)


CODECS: dict[str, Callable[[BenchSettings], list[Row]]] = {
    "openpi": openpi_rows,
    "gr00t": gr00t_rows,
    "openvla": openvla_rows,
}


def run(settings: BenchSettings) -> list[Row]:
    """Codec rows for every plugin installed here."""
    rows: list[Row] = []
    missing = []
    for name, codec_rows in CODECS.items():
        try:
            rows += codec_rows(settings)
        except ImportError as exc:
            missing.append(f"{name} ({exc.name or exc})")
    if not rows:
        raise SectionSkipped(f"no codec plugin installed: {', '.join(missing)}")
    return rows
