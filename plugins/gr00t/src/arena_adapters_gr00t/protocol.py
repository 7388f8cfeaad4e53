"""Protocol constants and the request/reply envelopes of the GR00T policy server.

A request is a msgpack map with keys in this order: ``"endpoint"``, ``"data"`` (only for endpoints
that take input), ``"api_token"`` (only when the client has one). N1.6 (and later) wraps the
observation of ``get_action`` as ``{"observation": obs, "options": ...}`` and replies
``[action, info]``; N1.5 sends the observation itself as ``data`` and replies with the action map.
Errors come back as ``{"error": "<message>"}`` (or the bare bytes ``b"ERROR"`` from old servers).
"""

from __future__ import annotations

from typing import Any

from arena_adapters.errors import ConfigError

DEFAULT_PORT = 5555
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ENDPOINT = f"tcp://{DEFAULT_HOST}:{DEFAULT_PORT}"

N16 = "n1.6"
N15 = "n1.5"
PROTOCOL_VERSIONS = (N16, N15)

FLAT = "flat"
NESTED = "nested"
FORMATS = (FLAT, NESTED)

PING = "ping"
KILL = "kill"
GET_ACTION = "get_action"
RESET = "reset"
GET_MODALITY_CONFIG = "get_modality_config"
ENDPOINTS_WITHOUT_INPUT = (PING, KILL, GET_MODALITY_CONFIG)

PING_REPLY = {"status": "ok", "message": "Server is running"}
UNAUTHORIZED = "Unauthorized: Invalid API token"
LEGACY_ERROR_REPLY = b"ERROR"

VIDEO, STATE, ACTION, LANGUAGE = "video", "state", "action", "language"


def request(endpoint: str, data: Any = None, *, with_data: bool, api_token: str | None) -> dict[str, Any]:
    """The request map for ``endpoint``, keys in upstream's order."""
    message: dict[str, Any] = {"endpoint": endpoint}
    if with_data:
        message["data"] = data
    if api_token:
        message["api_token"] = api_token
    return message


def get_action_data(observation: Any, options: Any, protocol_version: str) -> Any:
    """The ``data`` of a ``get_action`` request for the protocol version."""
    if protocol_version == N15:
        return observation
    return {"observation": observation, "options": options}


def check_protocol_version(value: str) -> str:
    """Return the canonical version name (``"n1.6"`` also for later servers, ``"n1.5"``)."""
    lowered = value.strip().lower()
    aliases = {"n1.6": N16, "1.6": N16, "n1.7": N16, "1.7": N16, "n1.5": N15, "1.5": N15}
    if lowered not in aliases:
        raise ConfigError(f"option 'protocol_version': expected one of {list(PROTOCOL_VERSIONS)}, got {value!r}")
    return aliases[lowered]
