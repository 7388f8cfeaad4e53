"""Our json_numpy-compatible codec vs PyPI ``json_numpy`` on an OpenVLA request (224x224x3 image).

The request is what OpenVLA clients send: ``{"image": uint8 (224, 224, 3), "instruction": str,
"unnorm_key": str}`` (about 200 KB of JSON). Both codecs write identical bytes and decode to
identical values (checked before timing). "encode" is the HTTP body (bytes), as a client sends it;
"decode" is what the server does with that body. Ours is timed with its default base64 backend
(pybase64) and with the standard library's binascii.

    python benchmarks/openvla_codec.py [--repeat 300]

Prints microseconds per call and json_numpy / ours (best of 7 runs: on a shared machine the minimum
is the least noisy).
"""

from __future__ import annotations

import argparse
from typing import Any

import json_numpy
import numpy as np
from arena_adapters_openvla import base64_backend, codec
from timing import per_call_us

from arena_adapters.testing.golden import assert_strictly_equal


def openvla_request() -> dict[str, Any]:
    image = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
    return {"image": image, "instruction": "pick up the cup", "unnorm_key": "bridge_orig"}




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=300, help="calls per timed run (default 300)")
    args = parser.parse_args()

    request = openvla_request()
    body = codec.encode(request)
    assert body == json_numpy.dumps(request).encode(), "codecs disagree on the request bytes"
    assert_strictly_equal(codec.decode(body), json_numpy.loads(body))
    slow = base64_backend.BINASCII
    fast_name = base64_backend.DEFAULT.name

    def jn_encode() -> bytes:
        return json_numpy.dumps(request).encode()

    rows = [
        ("encode", lambda: codec.encode(request), lambda: codec.encode(request, backend=slow), jn_encode),
        ("decode", lambda: codec.decode(body), lambda: codec.decode(body, backend=slow),
         lambda: json_numpy.loads(body)),
        ("encode + decode", lambda: codec.decode(codec.encode(request)),
         lambda: codec.decode(codec.encode(request, backend=slow), backend=slow),
         lambda: json_numpy.loads(jn_encode())),
    ]
    print(f"openvla codec, 224x224x3 request {len(body) / 1e3:.1f} KB of JSON; best of 7 runs x {args.repeat} calls")
    header = f"ours/{fast_name} (us)"
    print(f"{'operation':<18}{'json_numpy (us)':>17}{header:>22}{'ratio':>8}{'ours/binascii (us)':>21}{'ratio':>8}")
    for name, ours, ours_binascii, upstream in rows:
        upstream_us = per_call_us(upstream, args.repeat)
        ours_us = per_call_us(ours, args.repeat)
        binascii_us = per_call_us(ours_binascii, args.repeat)
        print(f"{name:<18}{upstream_us:>17.1f}{ours_us:>22.1f}{upstream_us / ours_us:>7.1f}x"
              f"{binascii_us:>21.1f}{upstream_us / binascii_us:>7.1f}x")
    print("ratio = json_numpy time / ours (higher is faster)")


if __name__ == "__main__":
    main()
