"""Endpoints: one parser for every protocol's server addresses, and replica lists.

``parse_endpoint("tcp://gpu-1:5555", schemes=("tcp",))`` gives an :class:`Endpoint`; a list or a
comma-separated string of several is a list of replicas of one policy server
(:func:`split_replicas`). Mistakes are :class:`~arena_adapters.errors.ConfigError` naming the
option, what a valid address looks like and what arrived.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from arena_adapters.errors import ConfigError

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-*]+)(?::(?P<port>[^/]*))?(?P<path>/.*)?$")


@dataclass(frozen=True)
class Endpoint:
    """A parsed server address.

    Attributes:
        scheme: ``tcp``, ``ws``, ``wss``, ``http``, ``https``, ...
        host: the host name or IP (IPv6 without brackets).
        port: the port, 1-65535.
        path: the path after the port (``""`` when none).
    """

    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def url(self) -> str:
        """The address as text: ``scheme://host:port/path``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def is_loopback(self) -> bool:
        """True for ``localhost`` and loopback IPs: traffic that never leaves the machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def is_secure(self) -> bool:
        """True for TLS schemes (``wss``, ``https``)."""
        return self.scheme in ("wss", "https")

    def __str__(self) -> str:
        return self.url


def parse_endpoint(
    text: str,
    *,
    schemes: Sequence[str],
    default_port: int | Mapping[str, int] | None = None,
    option: str = "endpoint",
    allow_path: bool = False,
) -> Endpoint:
    """Parse one address; the scheme may be left out (the first of ``schemes`` is used).

    Args:
        text: ``scheme://host:port[/path]`` or ``host:port``.
        schemes: the schemes this protocol speaks, the default first.
        default_port: the port when none is given, or one per scheme (``{"ws": 8000, "wss": 443}``);
            ``None`` (or a scheme missing from the map) makes the port required.
        option: the option name, for messages.
        allow_path: accept a path after the port (HTTP base URLs).

    Raises:
        ConfigError: not an address of this protocol.
    """
    example = f"{schemes[0]}://HOST:PORT"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"option {option!r}: expected an address like {example}, got {text!r}")
    raw = text.strip()
    scheme, separator, rest = raw.partition("://")
    if not separator:
        scheme, rest = schemes[0], raw
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:/", raw) or re.match(r"^[A-Za-z]+//", raw):
            raise ConfigError(f"option {option!r}: malformed address {text!r}; expected {example}")
    scheme = scheme.lower()
    if scheme not in schemes:
        raise ConfigError(
            f"option {option!r}: scheme {scheme!r} in {text!r} is not one of {list(schemes)}; expected {example}"
        )
    match = _HOST_PORT.match(rest)
    if match is None:
        raise ConfigError(f"option {option!r}: cannot read host and port from {text!r}; expected {example}")
    host = match["host"].strip("[]")
    path = match["path"] or ""
    if path and not allow_path:
        raise ConfigError(f"option {option!r}: unexpected path {path!r} in {text!r}; expected {example}")
    if match["port"] is None:
        port_or_none = default_port.get(scheme) if isinstance(default_port, Mapping) else default_port
        if port_or_none is None:
            raise ConfigError(f"option {option!r}: {text!r} has no port; expected {example}")
        port = port_or_none
    else:
        if not match["port"].isdigit():
            raise ConfigError(f"option {option!r}: port {match['port']!r} in {text!r} is not a number")
        port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ConfigError(f"option {option!r}: port {port} in {text!r} is outside 1-65535")
    return Endpoint(scheme, host, port, path.rstrip("/") if allow_path else "")


def split_replicas(value: str | Sequence[str], option: str = "endpoint") -> list[str]:
    """The replica addresses in ``value``: a comma-separated string or a sequence of strings.

    Raises:
        ConfigError: empty, or an entry is not a string.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"option {option!r}: expected addresses (str), got {value!r}")
    replicas = [item.strip() for item in items if item.strip()]
    if not replicas:
        raise ConfigError(f"option {option!r}: expected at least one address, got {value!r}")
    return replicas
