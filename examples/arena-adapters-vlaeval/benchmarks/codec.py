"""The vla-eval codec of this plugin vs vla-eval's own (``vla_eval.protocol.messages``), side by side.

    PYTHONPATH=<vla-evaluation-harness checkout>/src python examples/arena-adapters-vlaeval/benchmarks/codec.py

Times packing one env's observation (two 224x224 RGB images, an 8-float state, an instruction)
and unpacking an ACTION reply (a 16x8 float32 chunk), raw images (vla-eval's ``raw``) and png (its
default), and prints the ratio upstream / ours. Without vla-eval importable it times ours alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from arena_adapters_vlaeval import codec

from arena_adapters import plugin as ap


def best_of(function: Callable[[], Any], repeats: int = 200) -> float:
    """The fastest of ``repeats`` calls, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    observation = {
        "images": {key: rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
                   for key in ("exterior_image_1_left", "wrist_image_left")},
        "state": np.linspace(0, 1, 8, dtype=np.float32),
        "task_description": "move the gripper onto the red target and close it",
    }
    reply = codec.pack(codec.Message(codec.ACTION, {"actions": rng.random((16, 8), dtype=np.float32)}, 7))
    limits = ap.DecodeLimits()
    try:
        from vla_eval.protocol import messages, numpy_codec
    except ImportError:
        messages = numpy_codec = None
    rows = []
    for image_format in ("raw", "png"):
        repeats = 200 if image_format == "raw" else 20
        ours = best_of(lambda f=image_format: codec.pack(codec.Message(codec.OBSERVATION, observation, 3), f), repeats)
        theirs = None
        if messages is not None:
            numpy_codec.set_image_format(image_format)
            message = messages.Message(messages.MessageType.OBSERVATION, observation, 3)
            theirs = best_of(lambda m=message: messages.pack_message(m), repeats)
        rows.append((f"pack observation ({image_format} images)", ours, theirs))
    ours = best_of(lambda: codec.unpack(reply, limits))
    theirs = best_of(lambda: messages.unpack_message(reply)) if messages is not None else None
    rows.append(("unpack ACTION (16x8 float32)", ours, theirs))
    print(f"{'operation':40s} {'ours us':>10s} {'vla-eval us':>12s} {'vla-eval/ours':>14s}")
    for name, ours, theirs in rows:
        other = f"{theirs:12.1f} {theirs / ours:14.2f}" if theirs is not None else f"{'-':>12s} {'-':>14s}"
        print(f"{name:40s} {ours:10.1f} {other}")


if __name__ == "__main__":
    main()
