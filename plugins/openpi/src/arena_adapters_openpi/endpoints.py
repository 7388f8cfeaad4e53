"""openpi server addresses: ``ws://HOST:PORT`` URLs, one or several (comma-separated replicas)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from arena_adapters.errors import ConfigError

DEFAULT_PORT = 8000
DEFAULT_ENDPOINT = f"ws://127.0.0.1:{DEFAULT_PORT}"


@dataclass(frozen=True)
class Endpoint:
    """One openpi server.

    Attributes:
        url: the WebSocket URL the client connects to (``ws://127.0.0.1:8000``).
        host, port: where it listens.
        secure: ``wss://`` (TLS) rather than ``ws://``.
    """

    url: str
    host: str
    port: int
    secure: bool = False

    @property
    def health_url(self) -> str:
        """The HTTP URL of the server's ``/healthz`` route."""
        scheme = "https" if self.secure else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/healthz"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``ws://HOST:PORT[/path]``; ``HOST:PORT`` means ``ws://``; no port means 8000 (443 for wss).

    Raises:
        ConfigError: not a ws/wss URL, or no host.
    """
    raw = text.strip()
    if not raw:
        raise ConfigError("option 'endpoint': empty endpoint")
    if "://" not in raw:
        raw = "ws://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(f"option 'endpoint': expected a ws:// or wss:// URL, got {text!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"option 'endpoint': bad port in {text!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"option 'endpoint': no host in {text!r}")
    secure = parts.scheme == "wss"
    if port is None:
        port = 443 if secure else DEFAULT_PORT
    path = parts.path or ""
    host_text = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"{parts.scheme}://{host_text}:{port}{path}"
    if parts.query:
        url += "?" + parts.query
    return Endpoint(url=url, host=parts.hostname, port=port, secure=secure)


def parse_endpoints(text: str | list[str] | tuple[str, ...]) -> tuple[Endpoint, ...]:
    """Parse one endpoint or several (a list, or one comma-separated string), without duplicates.

    Raises:
        ConfigError: no endpoint, or one that does not parse.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    endpoints: list[Endpoint] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"option 'endpoint': expected URL strings, got {item!r}")
        if item.strip():
            endpoint = parse_endpoint(item)
            if endpoint not in endpoints:
                endpoints.append(endpoint)
    if not endpoints:
        raise ConfigError(f"option 'endpoint': no endpoint in {text!r}")
    return tuple(endpoints)
