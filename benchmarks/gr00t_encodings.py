"""GR00T request arrays: our ``npy`` form (``__ndarray_class__``, N1.6 servers) vs our ``nd`` form
(msgpack-numpy maps, N1.7-era servers), and our ``nd`` encoder vs the PyPI ``msgpack-numpy``
package's (the gr00t plugin's testing extra installs it), on the flat DROID ``get_action`` request
for 1 and 16 envs. Runs are interleaved and the median kept (a busy machine's spikes hit all alike).
Before timing, our ``nd`` bytes are checked against msgpack-numpy's.

    python benchmarks/gr00t_encodings.py [--repeat 200]

(The codec vs upstream's ``np.save`` + msgpack is ``arena-adapters bench --section codecs``.)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import msgpack
from arena_adapters_gr00t.codec import ND, NPY, decode, encode

from arena_adapters.bench.codecs import gr00t_request
from arena_adapters.bench.timing import interleaved_medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="calls per timed run at B=1 (default 200)")
    args = parser.parse_args()
    try:
        import msgpack_numpy
    except ImportError:
        msgpack_numpy = None

    print("GR00T request arrays: npy (__ndarray_class__) vs nd (msgpack-numpy maps), both ours; medians")
    print(f"{'B':>3} {'operation':<36}{'npy (ms)':>10}{'nd (ms)':>10}{'npy/nd':>9}")
    for batch in (1, 16):
        request = gr00t_request(batch)
        npy_frame, nd_frame = encode(request, arrays=NPY), encode(request, arrays=ND)
        rows: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            ("request encode", lambda r=request: encode(r, arrays=NPY), lambda r=request: encode(r, arrays=ND)),
            ("request decode", lambda f=npy_frame: decode(f), lambda f=nd_frame: decode(f)),
            ("request decode (writable, server)", lambda f=npy_frame: decode(f, writable=True),
             lambda f=nd_frame: decode(f, writable=True)),
        ]
        if msgpack_numpy is not None:
            peer = msgpack_numpy.encode
            assert nd_frame == msgpack.packb(request, default=peer), "our nd bytes differ from msgpack-numpy's"
            rows.append(("nd encode: msgpack-numpy | ours",
                         lambda r=request, p=peer: msgpack.packb(r, default=p),
                         lambda r=request: encode(r, arrays=ND)))
        repeat = max(10, args.repeat // batch)
        print(f"{batch:>3} request npy {len(npy_frame) / 1e6:.3f} MB, nd {len(nd_frame) / 1e6:.3f} MB")
        for name, first, second in rows:
            times = interleaved_medians({"first": first, "second": second}, repeat, 9)
            print(f"{batch:>3} {name:<36}{times['first'] * 1e3:>10.3f}{times['second'] * 1e3:>10.3f}"
                  f"{times['first'] / times['second']:>8.2f}x")


if __name__ == "__main__":
    main()
