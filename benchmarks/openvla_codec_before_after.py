"""Another version of the openvla codec (a ``codec.py`` file) against the installed one, in one run.

For before/after figures of a codec change: the OpenVLA request (224x224x3 image) and an OFT reply
(8 float64 (7,) actions) are encoded and decoded by both; both must write identical bytes and read
identical values. Each is timed as the fastest of many single calls, alternating the two codecs,
which is robust on a loaded machine (``arena-adapters bench`` has the codec vs json_numpy table).

    git show 6e3f469:plugins/openvla/src/arena_adapters_openvla/codec.py > /tmp/codec_before.py
    python benchmarks/openvla_codec_before_after.py /tmp/codec_before.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from arena_adapters_openvla import codec

from arena_adapters.testing.golden import assert_strictly_equal


def load_codec(path: str) -> ModuleType:
    """The codec module in the file ``path``."""
    spec = importlib.util.spec_from_file_location("baseline_codec", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fastest_us(first: Callable[[], Any], second: Callable[[], Any], calls: int) -> tuple[float, float]:
    """The fastest single call of each of two functions, called alternately ``calls`` times."""
    best = [float("inf"), float("inf")]
    for _ in range(calls):
        for index, function in enumerate((first, second)):
            started = time.perf_counter()
            function()
            best[index] = min(best[index], time.perf_counter() - started)
    return best[0] * 1e6, best[1] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="the other codec.py")
    parser.add_argument("--calls", type=int, default=3000, help="single calls of each (default 3000)")
    args = parser.parse_args()

    baseline = load_codec(args.baseline)
    image = (np.arange(224 * 224 * 3) % 251).astype(np.uint8).reshape(224, 224, 3)
    messages = [
        ("request", {"image": image, "instruction": "pick up the cup", "unnorm_key": "bridge_orig"},
         codec.REQUEST_SEPARATORS),
        ("OFT reply", [np.arange(7, dtype=np.float64) + i for i in range(8)], codec.REPLY_SEPARATORS),
    ]
    print(f"baseline {args.baseline} vs installed codec: fastest of {args.calls} single calls each, alternating; "
          f"ratio = baseline / ours (higher is faster)")
    print(f"{'operation':<22}{'baseline (us)':>15}{'ours (us)':>12}{'ratio':>8}")
    for name, value, separators in messages:
        body = codec.encode(value, separators=separators)
        assert body == baseline.encode(value, separators=separators), f"codecs disagree on the {name} bytes"
        assert_strictly_equal(codec.decode(body), baseline.decode(body))
        rows = [
            (f"encode {name}", lambda v=value, s=separators: baseline.encode(v, separators=s),
             lambda v=value, s=separators: codec.encode(v, separators=s)),
            (f"decode {name}", lambda b=body: baseline.decode(b), lambda b=body: codec.decode(b)),
        ]
        for row, before, after in rows:
            before_us, after_us = fastest_us(before, after, args.calls)
            print(f"{row:<22}{before_us:>15.2f}{after_us:>12.2f}{before_us / after_us:>7.2f}x")


if __name__ == "__main__":
    main()
