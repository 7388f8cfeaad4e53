"""arena-adapters plugin for OpenVLA and OpenVLA-OFT ``deploy.py`` servers.

Speaks their native protocol: ``POST /act`` over HTTP with json_numpy JSON bodies. Parts:
:mod:`.codec` (fast json_numpy-compatible codec), :mod:`.transport` (the transport, on the core's
transport kit) over :mod:`.http_connection` (HTTP/1.1 with a total deadline), :mod:`.observations`
/ :mod:`.actions` (translators for both variants), :mod:`.server` (reference server, ``server``
extra), :mod:`.probe` (``arena-adapters ping openvla``).
"""

from __future__ import annotations

__version__ = "0.1.0"
