"""The fuzz matrix of the openvla decoders: what hostile bytes give, how long they take, what memory.

Inputs: byte mutations of the golden bodies (flips, cuts, insertions, truncations), random bytes,
and structured hostile bodies (deep nesting, long integer literals, huge declared shapes, bad
dtypes). Each goes through the three decoders: the codec (``codec.decode``), the transport's reply
decoding (``HttpTransport.decode_reply``, plain and double-encoded) and the reference server's
request decoding (``codec.loads`` with the server's limits). Outcomes are counted by exception
type; anything but ProtocolError / ServerError (and JSONDecodeError on the server, its 422) is a
bug and is listed.

    python benchmarks/openvla_hostile.py [--mutations 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from arena_adapters_openvla import codec
from arena_adapters_openvla.transport import HttpTransport

from arena_adapters.errors import ProtocolError, ServerError
from arena_adapters.testing.golden import find_golden_dir, load_cases
from arena_adapters.transport import SERVER_MAX_REQUEST_BYTES, DecodeLimits

EXPECTED = (ProtocolError, ServerError, json.JSONDecodeError)


def mutate(data: bytes, rng: random.Random) -> bytes:
    body = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(max(1, len(body)))
        kind = rng.choice(["flip", "cut", "insert", "truncate", "set"])
        if kind == "flip" and body:
            body[at] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            del body[at:at + rng.randint(1, 64)]
        elif kind == "insert":
            body[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == "truncate":
            del body[at:]
        elif body:
            body[at] = rng.choice(b'"[]{},:0123456789.-eE\\ntfu')
    return bytes(body)


def structured(rng: random.Random) -> bytes:
    n = rng.choice([65, 1_000, 100_000, 1_000_000])
    data = base64.b64encode(rng.randbytes(rng.randint(0, 64))).decode()
    shape = rng.choice([[2**40], [2**31, 2**31], [1] * 40, [-1], [1.5], 3, None])
    dtype = rng.choice(["|O", "V8", ",f8", "<f8,<i4", "S0", "<U1000000000", "f" * 40, 1, ["<f8"], "<f8"])
    return rng.choice([
        b"[" * n + b"]" * n,
        b'{"a":' * min(n, 100_000) + b"1" + b"}" * min(n, 100_000),
        b'{"shape": [' + b"7" * n + b"]}",
        json.dumps({"__numpy__": data, "dtype": dtype, "shape": shape}).encode(),
        b'["' + b"[" * n + b'"]',
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", type=int, default=20_000, help="mutated golden bodies (default 20000)")
    parser.add_argument("--structured", type=int, default=2_000, help="structured hostile bodies (default 2000)")
    parser.add_argument("--random", type=int, default=2_000, help="random byte strings (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    directory = find_golden_dir(__file__)
    assert directory is not None, "golden vectors not found"
    seeds = [case.data for case in load_cases(directory, "openvla")]
    inputs = {
        "golden mutations": [mutate(rng.choice(seeds), rng) for _ in range(args.mutations)],
        "structured hostile": [structured(rng) for _ in range(args.structured)],
        "random bytes": [rng.randbytes(rng.randint(0, 4096)) for _ in range(args.random)],
    }
    plain, encoded = HttpTransport("http://127.0.0.1:9"), HttpTransport("http://127.0.0.1:9", encoded=True)
    server_limits = DecodeLimits(max_message_bytes=SERVER_MAX_REQUEST_BYTES)
    decoders: dict[str, Callable[[bytes], Any]] = {
        "codec.decode": codec.decode,
        "transport reply": plain.decode_reply,
        "transport reply (encoded)": lambda data: encoded.decode_reply(
            codec.encode_json_string(data.decode("latin-1").encode("ascii", "backslashreplace"))),
        "server request": lambda data: codec.loads(data, limits=server_limits),
    }
    print(f"openvla fuzz matrix: seed {args.seed}; max RSS before: {_max_rss_mb():.0f} MB")
    print(f"{'decoder':<27}{'inputs':<20}{'tried':>7}  outcomes{'':<44}{'worst ms':>9}")
    bugs = []
    for decoder_name, decode in decoders.items():
        for input_name, bodies in inputs.items():
            outcomes: Counter[str] = Counter()
            worst = 0.0
            for body in bodies:
                started = time.perf_counter()
                try:
                    decode(body)
                    outcome = "accepted"
                except EXPECTED as error:
                    outcome = type(error).__name__
                except Exception as error:  # a bug: listed below
                    outcome = f"UNTYPED {type(error).__name__}"
                    bugs.append((decoder_name, body[:80], repr(error)[:120]))
                worst = max(worst, time.perf_counter() - started)
                outcomes[outcome] += 1
            shown = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
            print(f"{decoder_name:<27}{input_name:<20}{len(bodies):>7}  {shown:<52}{worst * 1e3:>9.1f}")
    print(f"max RSS after: {_max_rss_mb():.0f} MB; untyped exceptions: {len(bugs)}")
    for bug in bugs[:20]:
        print("  ", *bug)
    plain.close()
    encoded.close()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
