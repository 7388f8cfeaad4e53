"""arena-adapters plugin for Isaac-GR00T policy servers (ZeroMQ REQ/REP + msgpack).

- :mod:`~arena_adapters_gr00t.codec`: the wire codec, byte-identical to upstream's ``MsgSerializer``;
- :mod:`~arena_adapters_gr00t.transport`: :class:`Gr00tTransport`, a REQ client with real timeouts;
- :mod:`~arena_adapters_gr00t.droid` and :mod:`~arena_adapters_gr00t.translators`: DROID and
  config-driven translators (:mod:`~arena_adapters_gr00t.embodiment` describes the config);
- :mod:`~arena_adapters_gr00t.server`: a reference server; :mod:`~arena_adapters_gr00t.probe`: the probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arena_adapters.importing import lazy_exports

if TYPE_CHECKING:
    from arena_adapters_gr00t.codec import decode, encode
    from arena_adapters_gr00t.embodiment import EmbodimentSpec, load_spec
    from arena_adapters_gr00t.modality import ActionConfig, ModalityConfig
    from arena_adapters_gr00t.reference_policy import ReferencePolicy
    from arena_adapters_gr00t.server import ReferenceServer, start_reference_server
    from arena_adapters_gr00t.translators import Gr00tActions, Gr00tObservations
    from arena_adapters_gr00t.transport import Gr00tTransport

_EXPORTS = {
    "decode": "codec", "encode": "codec", "EmbodimentSpec": "embodiment", "load_spec": "embodiment",
    "ActionConfig": "modality", "ModalityConfig": "modality", "ReferencePolicy": "reference_policy",
    "ReferenceServer": "server", "start_reference_server": "server", "Gr00tActions": "translators",
    "Gr00tObservations": "translators", "Gr00tTransport": "transport",
}
"""Imported on first use, so that a server process importing one module does not import torch."""
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ActionConfig",
    "EmbodimentSpec",
    "Gr00tActions",
    "Gr00tObservations",
    "Gr00tTransport",
    "ModalityConfig",
    "ReferencePolicy",
    "ReferenceServer",
    "decode",
    "encode",
    "load_spec",
    "start_reference_server",
]
