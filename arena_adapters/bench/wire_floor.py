"""The wire's own floor: a raw ZeroMQ REQ/REP round trip of a message of the query's size to an echo
server in another process (no encoding, no decoding, a two-byte reply), on this machine.

GR00T's transport is one ZeroMQ request per query; what a query of ``n`` bytes costs in
``transfer`` can be no less than this round trip, whatever the client or the server does with the
bytes. Used by the end-to-end section for its gr00t rows.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from arena_adapters.bench.timing import median_seconds

ECHO_SERVER = """
import sys, zmq
socket = zmq.Context().socket(zmq.REP)
port = socket.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    message = socket.recv(copy=False)
    socket.send(b"ok")
    if len(message) == 1:
        break
"""


class ZmqEcho:
    """An echo REP server in a process of its own and a REQ socket connected to it."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        import zmq

        self._process = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        self._socket.connect(f"tcp://127.0.0.1:{port}")

    def round_trip_s(self, nbytes: int, repeat: int = 5) -> float:
        """Median seconds of a round trip of ``nbytes`` (sent without a copy, as our transport does)."""
        payload = np.ones(max(nbytes, 2), dtype=np.uint8).data

        def once() -> None:
            self._socket.send(payload, copy=False)
            self._socket.recv()

        return median_seconds(once, 1, repeat)

    def close(self) -> None:
        """Stop the echo process and close the socket."""
        import zmq

        try:
            self._socket.send(b"x")
            self._socket.recv()
        except zmq.ZMQError:
            pass  # the process is killed below
        self._socket.close(linger=0)
        self._context.term()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ZmqEcho:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
