"""Parsing ``endpoint`` options: one or more base URLs of OpenVLA deploy servers."""

from __future__ import annotations

from urllib.parse import urlsplit

from arena_adapters.errors import ConfigError

ACT_PATH = "/act"
HEALTH_PATH = "/openapi.json"
OPENVLA_PORT = 8000
OFT_PORT = 8777


def parse_endpoints(text: str) -> tuple[str, ...]:
    """Split a comma-separated list of server addresses into normalized base URLs.

    Each entry may be ``http://host:port``, ``https://proxy/prefix``, ``host:port`` (``http://`` is
    assumed) and may end in ``/act`` (dropped: the transport appends it). A missing port means 8000,
    upstream OpenVLA's default.

    Raises:
        ConfigError: an empty list, an unsupported scheme or an entry without a host.
    """
    entries = [entry.strip() for entry in str(text).split(",") if entry.strip()]
    if not entries:
        raise ConfigError(f"option 'endpoint': expected 'http://HOST:PORT[,http://HOST:PORT...]', got {text!r}")
    return tuple(_normalize(entry) for entry in entries)


def _normalize(entry: str) -> str:
    url = entry if "://" in entry else f"http://{entry}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"option 'endpoint': {entry!r} is not an http(s) URL (OpenVLA servers speak HTTP)")
    if not parts.hostname:
        raise ConfigError(f"option 'endpoint': {entry!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"option 'endpoint': {entry!r}: {exc}") from exc
    netloc = parts.netloc if port is not None or parts.scheme == "https" else f"{parts.netloc}:{OPENVLA_PORT}"
    path = parts.path.rstrip("/")
    if path.endswith(ACT_PATH):
        path = path[: -len(ACT_PATH)]
    return f"{parts.scheme}://{netloc}{path}"
