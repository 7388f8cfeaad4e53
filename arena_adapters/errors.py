"""The exceptions arena-adapters raises.

Everything derives from :class:`AdapterError`, so a runner can catch one type. The subclasses say
which side is at fault: the user's configuration, the observations handed in, the server's reply,
the network, or a plugin.

Errors that come out of a policy carry their context: the adapter, the endpoint and the request
they concern (:meth:`AdapterError.add_context`), and whether sending the same request again is
safe (:attr:`AdapterError.retryable`).
"""

from __future__ import annotations

from typing import Any


class AdapterError(Exception):
    """Base class of every error raised by arena-adapters and its plugins.

    Attributes:
        adapter: the adapter the error concerns, once known.
        endpoint: the server address the error concerns, once known.
        request: what was being done (``"get_action for envs [0, 3]"``), once known.
        retryable: True when the request can be sent again safely: the server cannot have
            started on it (the connection was refused, or found closed before anything was sent).
    """

    retryable_by_default: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        retryable: bool | None = None,
        adapter: str | None = None,
        endpoint: str | None = None,
        request: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.retryable_by_default if retryable is None else retryable
        self.adapter = adapter
        self.endpoint = endpoint
        self.request = request

    def add_context(
        self, *, adapter: str | None = None, endpoint: str | None = None, request: str | None = None
    ) -> AdapterError:
        """Fill in the context that is not set yet; returns the error itself (for ``raise``)."""
        self.adapter = self.adapter or adapter
        self.endpoint = self.endpoint or endpoint
        self.request = self.request or request
        return self

    def context(self) -> str:
        """The context as text: ``"adapter 'gr00t', endpoint tcp://h:5555, get_action for 4 envs"``."""
        parts = []
        if self.adapter:
            parts.append(f"adapter {self.adapter!r}")
        if self.endpoint and self.endpoint not in self.message:
            parts.append(f"endpoint {self.endpoint}")
        if self.request:
            parts.append(self.request)
        return ", ".join(parts)

    def __str__(self) -> str:
        context = self.context()
        return f"{self.message} [{context}]" if context else self.message


class ConfigError(AdapterError, ValueError):
    """An option is missing, unknown or has a value of the wrong type or range."""


class ObservationError(AdapterError, ValueError):
    """An observation is missing a key or has the wrong shape, dtype or batch size.

    Raised before anything is sent to a server.
    """


class ActionError(AdapterError, ValueError):
    """An action chunk has the wrong shape (action dimension, horizon, batch size) or holds values
    the env cannot take (NaN or infinity, unless allowed)."""


class TransportError(AdapterError):
    """The connection to a policy server failed (refused, dropped, reset, closed by us)."""


class TransportTimeout(TransportError, TimeoutError):
    """A policy server did not answer within the call's deadline."""


class ServerError(AdapterError):
    """The policy server answered with an error of its own.

    Attributes:
        server_message: the server's error text, verbatim (a message or a traceback).
    """

    def __init__(self, message: str, server_message: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.server_message = server_message or message


class ProtocolError(AdapterError):
    """A message could not be encoded or decoded, breaks the protocol, or exceeds a decode limit."""


class PluginError(AdapterError):
    """A plugin failed to import or registered invalid parts."""


class UnknownAdapterError(AdapterError, LookupError):
    """No adapter (or part) of the asked-for name is registered."""


class UnknownEnvironmentError(AdapterError, LookupError):
    """No environment of the asked-for name is built in or registered under the
    ``arena_adapters.environments`` entry-point group."""
