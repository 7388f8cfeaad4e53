"""arena-adapters plugin for openpi policy servers (WebSocket + msgpack-numpy).

Parts: the transport ``openpi.websocket`` (:class:`WebsocketTransport`), the translators
``openpi.observations`` (DROID / LIBERO / ALOHA) and ``openpi.actions``, the adapter ``openpi``,
the reference server ``openpi.server`` (:func:`start_server`) and the probe ``openpi.probe``::

    import arena_adapters as aa
    policy = aa.load_policy("openpi", endpoint="ws://127.0.0.1:8000", instruction="pick up the cup")
    actions = policy.get_action(obs)        # (num_envs, 8)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arena_adapters.importing import lazy_exports

if TYPE_CHECKING:
    from arena_adapters.transport import DecodeLimits
    from arena_adapters_openpi.actions import OpenpiActions
    from arena_adapters_openpi.builtin_policy import EchoStatePolicy
    from arena_adapters_openpi.codec import decode, encode
    from arena_adapters_openpi.observations import OpenpiObservations, synthetic_request
    from arena_adapters_openpi.probe import probe_server
    from arena_adapters_openpi.server import ReferenceServer, start_server
    from arena_adapters_openpi.transport import WebsocketTransport

_EXPORTS = {
    "OpenpiActions": "actions", "EchoStatePolicy": "builtin_policy", "DecodeLimits": "codec", "decode": "codec",
    "encode": "codec", "OpenpiObservations": "observations", "synthetic_request": "observations",
    "probe_server": "probe", "ReferenceServer": "server", "start_server": "server",
    "WebsocketTransport": "transport",
}
"""Imported on first use, so that a server process importing one module does not import torch."""
__getattr__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.1.0"

__all__ = [
    "DecodeLimits",
    "EchoStatePolicy",
    "OpenpiActions",
    "OpenpiObservations",
    "ReferenceServer",
    "WebsocketTransport",
    "decode",
    "encode",
    "probe_server",
    "start_server",
    "synthetic_request",
]
