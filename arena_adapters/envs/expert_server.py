"""Serve an environment's scripted expert through an adapter's reference server, as a process of its own.

    python -m arena_adapters.envs.expert_server --adapter gr00t [--policy expert|null] [--port 0]

The adapter's plugin says how (its :class:`~arena_adapters.records.ServedExpertRecord`). A parent
that has already looked the record up passes the two factories instead of the adapter, so that this
process imports only the server and the served policy (not the plugin's client parts, nor torch)
and starts in a fraction of the time::

    python -m arena_adapters.envs.expert_server --server MODULE:ATTR --expert MODULE:ATTR \\
        [--server-options JSON]

Prints one line ``ENDPOINT <url>`` once the server listens, then serves until it gets SIGTERM or
SIGINT, or its standard input is closed (so it never outlives a parent that started it with a pipe).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from arena_adapters.errors import ConfigError
from arena_adapters.importing import import_object
from arena_adapters.records import NULL_POLICY, ReferenceServerRecord, ServedExpertRecord

if TYPE_CHECKING:
    from arena_adapters.plugins import PluginRegistry

READY_PREFIX = "ENDPOINT "
EXPERT_POLICY = "expert"
POLICIES = (EXPERT_POLICY, NULL_POLICY)
"""What the server serves: the environment's expert, or the server's zero-work constant chunk."""


def served_expert(adapter: str, environment: str = "reach", registry: PluginRegistry | None = None
                  ) -> ServedExpertRecord:
    """The record by which ``adapter`` serves ``environment``'s expert, loading plugins as needed.

    Raises:
        UnknownAdapterError, PluginError: no such adapter, or its plugin failed to load.
        ConfigError: no plugin registered a served expert for this adapter (the message lists
            the adapters that have one).
    """
    from arena_adapters.plugins import default_registry

    registry = registry or default_registry()
    registry.adapter(adapter)
    found = _find(registry, adapter, environment)
    if found is None:
        registry.load_all()  # another plugin may serve the expert through this adapter
        found = _find(registry, adapter, environment)
    if found is None:
        names = sorted({r.adapter for r in registry.records(ServedExpertRecord) if r.environment == environment})
        raise ConfigError(f"adapter {adapter!r} cannot serve the {environment!r} expert: no plugin registered a "
                          f"served expert for it; adapters that can: {', '.join(names) or '(none)'}")
    return found


def _find(registry: PluginRegistry, adapter: str, environment: str) -> ServedExpertRecord | None:
    for record in registry.records(ServedExpertRecord):
        if record.adapter == adapter and record.environment == environment:
            return record
    return None


def reference_server_factory(adapter: str, registry: PluginRegistry | None = None) -> Any:
    """The factory of ``adapter``'s reference server.

    Raises:
        ConfigError: the adapter has no reference server.
    """
    from arena_adapters.plugins import default_registry

    registry = registry or default_registry()
    record = registry.adapter(adapter)
    if not record.reference_server:
        raise ConfigError(f"adapter {adapter!r} has no reference server")
    return registry.part(ReferenceServerRecord, record.reference_server).factory


def start_served_policy(
    server_factory: Any,
    expert_factory: Any,
    server_options: Mapping[str, Any],
    *,
    policy: str = EXPERT_POLICY,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Any:
    """Start ``server_factory(policy=..., host, port, **server_options)`` serving the expert built
    by ``expert_factory()``, or the server's null policy; returns the running server."""
    if policy not in POLICIES:
        raise ConfigError(f"option 'policy': expected one of {list(POLICIES)}, got {policy!r}")
    served = expert_factory() if policy == EXPERT_POLICY else NULL_POLICY
    return server_factory(policy=served, host=host, port=port, **dict(server_options))


def start_expert_server(adapter: str, host: str = "127.0.0.1", port: int = 0, *,
                        policy: str = EXPERT_POLICY, environment: str = "reach") -> Any:
    """Start ``adapter``'s reference server serving ``environment``'s expert (or the null policy)
    in this process. Returns the running server (``.endpoint``, ``.stop()``, ``.wait()``).

    Raises:
        ConfigError: the adapter cannot serve the expert, or has no reference server.
    """
    record = served_expert(adapter, environment)
    if record.in_process:
        raise ConfigError(f"adapter {adapter!r} runs the {environment!r} expert in process; it has no server")
    return start_served_policy(reference_server_factory(adapter), record.factory, record.server_options,
                               policy=policy, host=host, port=port)


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
    parser = argparse.ArgumentParser(prog="python -m arena_adapters.envs.expert_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", help="adapter whose reference server serves the expert")
    parser.add_argument("--environment", default="reach", help="whose expert (default reach)")
    parser.add_argument("--server", help="MODULE:ATTR of the reference server factory (instead of --adapter)")
    parser.add_argument("--expert", help="MODULE:ATTR of the served expert's factory (with --server)")
    parser.add_argument("--server-options", default="{}", help="JSON object of server options (with --server)")
    parser.add_argument("--policy", default=EXPERT_POLICY, choices=POLICIES,
                        help="serve the expert (default) or the server's zero-work null policy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, if torch is used (default 1)")
    args = parser.parse_args(argv)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)
    if args.server:
        if not args.expert:
            parser.error("--server needs --expert")
        server = start_served_policy(import_object(args.server), import_object(args.expert),
                                     json.loads(args.server_options), policy=args.policy, host=args.host,
                                     port=args.port)
    elif args.adapter:
        server = start_expert_server(args.adapter, args.host, args.port, policy=args.policy,
                                     environment=args.environment)
    else:
        parser.error("give --adapter, or --server and --expert")

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
