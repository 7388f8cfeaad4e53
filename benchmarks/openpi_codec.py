"""Our openpi codec vs openpi-client's ``msgpack_numpy`` on the DROID observation and reply.

The observation is the one openpi's DROID example client sends: two 224x224x3 uint8 images,
joint_position float64 (7,), gripper_position float64 (1,) and a prompt (301 KB packed). Both codecs
produce identical bytes (checked before timing).

    python benchmarks/openpi_codec.py [--repeat 2000]

Prints microseconds per call for ours and upstream, and upstream / ours (best of 7 runs: on a shared
machine the minimum is the least noisy).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from arena_adapters_openpi.codec import decode, encode
from openpi_client import msgpack_numpy
from timing import per_call_us


def droid_observation() -> dict[str, Any]:
    image = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
    return {
        "observation/exterior_image_1_left": image,
        "observation/wrist_image_left": image.copy(),
        "observation/joint_position": np.linspace(-1, 1, 7),
        "observation/gripper_position": np.array([0.5]),
        "prompt": "pick up the cup",
    }


def droid_reply() -> dict[str, Any]:
    return {
        "actions": np.linspace(-1, 1, 80, dtype=np.float32).reshape(10, 8),
        "policy_timing": {"infer_ms": 12.5},
        "server_timing": {"infer_ms": 13.25, "prev_total_ms": 50.75},
    }




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2000, help="calls per timed run (default 2000)")
    args = parser.parse_args()

    observation, reply = droid_observation(), droid_reply()
    packed_obs, packed_reply = encode(observation), encode(reply)
    assert packed_obs == msgpack_numpy.packb(observation), "codecs disagree on the observation bytes"
    assert packed_reply == msgpack_numpy.packb(reply), "codecs disagree on the reply bytes"
    upstream_packer = msgpack_numpy.Packer()

    rows = [
        ("observation pack", lambda: encode(observation), lambda: upstream_packer.pack(observation)),
        ("observation unpack", lambda: decode(packed_obs), lambda: msgpack_numpy.unpackb(packed_obs)),
        ("observation pack+unpack", lambda: decode(encode(observation)),
         lambda: msgpack_numpy.unpackb(upstream_packer.pack(observation))),
        ("reply pack", lambda: encode(reply), lambda: upstream_packer.pack(reply)),
        ("reply unpack", lambda: decode(packed_reply), lambda: msgpack_numpy.unpackb(packed_reply)),
    ]
    print(f"openpi codec, DROID observation {len(packed_obs) / 1e3:.1f} KB, reply {len(packed_reply)} B; "
          f"best of 7 runs x {args.repeat} calls")
    print(f"{'operation':<26}{'ours (us)':>12}{'upstream (us)':>16}{'upstream/ours':>16}")
    for name, ours, upstream in rows:
        ours_us = per_call_us(ours, args.repeat)
        upstream_us = per_call_us(upstream, args.repeat)
        print(f"{name:<26}{ours_us:>12.2f}{upstream_us:>16.2f}{upstream_us / ours_us:>15.2f}x")


if __name__ == "__main__":
    main()
