"""Our GR00T codec vs the upstream way (``np.save`` into a buffer, then msgpack; msgpack then ``np.load``).

The message is the flat DROID ``get_action`` request the upstream DROID example sends (two
180x320x3 uint8 images, joint and gripper state, the instruction), for B=1 and B=16 envs in one
request, plus the (B, 32, 7) + (B, 32, 1) reply. Both encoders produce identical bytes (checked before
timing). "ours" decodes to read-only views (what the client uses); "ours, writable" copies the arrays
as ``np.load`` does (what the reference server uses).

    python benchmarks/gr00t_codec.py [--repeat 200]

Prints milliseconds per call (best of 5 runs of ``--repeat`` calls: on a shared machine the minimum
is the least noisy) and upstream / ours.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
from arena_adapters_gr00t.codec import decode, encode
from gr00t_upstream import upstream_decode, upstream_encode
from timing import per_call_ms


def droid_request(batch: int) -> dict[str, Any]:
    image = (np.arange(batch * 180 * 320 * 3) % 251).astype(np.uint8).reshape(batch, 1, 180, 320, 3)
    observation = {
        "video.exterior_image_1_left": image,
        "video.wrist_image_left": image[:, :, ::-1].copy(),
        "state.joint_position": np.linspace(-1, 1, batch * 7, dtype=np.float32).reshape(batch, 1, 7),
        "state.gripper_position": np.full((batch, 1, 1), 0.5, np.float32),
        "annotation.language.language_instruction": ["pick up the cup"] * batch,
    }
    return {"endpoint": "get_action", "data": {"observation": observation, "options": None}}


def droid_reply(batch: int) -> list[Any]:
    return [{
        "action.joint_position": np.linspace(-1, 1, batch * 32 * 7, dtype=np.float32).reshape(batch, 32, 7),
        "action.gripper_position": np.linspace(0, 1, batch * 32, dtype=np.float32).reshape(batch, 32, 1),
    }, {}]




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="calls per timed run at B=1 (default 200)")
    args = parser.parse_args()

    print("GR00T codec: flat DROID get_action request (two 180x320x3 images per env) and its reply")
    print(f"{'B':>3} {'operation':<34}{'upstream (ms)':>14}{'ours (ms)':>11}{'upstream/ours':>15}")
    for batch in (1, 16):
        request, reply = droid_request(batch), droid_reply(batch)
        frame, reply_frame = upstream_encode(request), upstream_encode(reply)
        assert encode(request) == frame, "our request bytes differ from the upstream way"
        assert encode(reply) == reply_frame, "our reply bytes differ from the upstream way"
        assert np.array_equal(decode(frame)["data"]["observation"]["video.wrist_image_left"],
                              upstream_decode(frame)["data"]["observation"]["video.wrist_image_left"])
        repeat = max(10, args.repeat // batch)
        rows: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            ("request encode", lambda r=request: upstream_encode(r), lambda r=request: encode(r)),
            ("request decode", lambda f=frame: upstream_decode(f), lambda f=frame: decode(f)),
            ("request decode (ours writable)", lambda f=frame: upstream_decode(f),
             lambda f=frame: decode(f, writable=True)),
            ("request encode+decode", lambda r=request: upstream_decode(upstream_encode(r)),
             lambda r=request: decode(encode(r))),
            ("reply encode+decode", lambda r=reply: upstream_decode(upstream_encode(r)),
             lambda r=reply: decode(encode(r))),
        ]
        print(f"{batch:>3} request {len(frame) / 1e6:.2f} MB, reply {len(reply_frame) / 1e3:.1f} KB; "
              f"best of 5 runs x {repeat} calls")
        for name, upstream, ours in rows:
            upstream_ms, ours_ms = per_call_ms(upstream, repeat), per_call_ms(ours, repeat)
            print(f"{batch:>3} {name:<34}{upstream_ms:>14.3f}{ours_ms:>11.3f}{upstream_ms / ours_ms:>14.1f}x")


if __name__ == "__main__":
    main()
