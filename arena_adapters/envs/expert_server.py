"""Serve the ``reach`` expert through an adapter's reference server, as a process of its own.

    python -m arena_adapters.envs.expert_server --adapter gr00t [--host 127.0.0.1] [--port 0]

Prints one line ``ENDPOINT <url>`` once the server listens, then serves until it gets SIGTERM or
SIGINT, or its standard input is closed (so it never outlives a parent that started it with a pipe).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import torch

from arena_adapters.envs.reach_serving import SERVED_EXPERTS
from arena_adapters.plugins import default_registry
from arena_adapters.records import ReferenceServerRecord

READY_PREFIX = "ENDPOINT "


def start_expert_server(adapter: str, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Start ``adapter``'s reference server serving the ``reach`` expert in this process.

    Returns the running server (``.endpoint``, ``.stop()``, ``.wait()``).

    Raises:
        ConfigError: the expert is not available for this adapter, or the adapter has no reference server.
    """
    from arena_adapters.errors import ConfigError

    served = SERVED_EXPERTS.get(adapter)
    if served is None or served.in_process:
        names = ", ".join(name for name, item in SERVED_EXPERTS.items() if not item.in_process)
        raise ConfigError(f"no served reach expert for adapter {adapter!r}; available: {names}")
    registry = default_registry()
    record = registry.adapter(adapter)
    if not record.reference_server:
        raise ConfigError(f"adapter {adapter!r} has no reference server")
    server_record = registry.part(ReferenceServerRecord, record.reference_server)
    return server_record.factory(policy=served.make_policy(), host=host, port=port, **served.server_options)


def _stop_when_stdin_closes(server: Any) -> None:
    def watch() -> None:
        try:
            while sys.stdin.readline():
                pass
        except (OSError, ValueError):
            pass
        server.stop()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m arena_adapters.envs.expert_server``."""
    parser = argparse.ArgumentParser(prog="python -m arena_adapters.envs.expert_server", description=__doc__)
    parser.add_argument("--adapter", required=True, help="adapter whose reference server to use")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    server = start_expert_server(args.adapter, args.host, args.port)

    def stop(signum: int, frame: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _stop_when_stdin_closes(server)
    print(f"{READY_PREFIX}{server.endpoint}", flush=True)
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
