"""The exceptions arena-adapters raises.

Everything derives from :class:`AdapterError`, so a runner can catch one type. The subclasses say
which side is at fault: the user's configuration, the observations handed in, the server's reply,
the network, or a plugin.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base class of every error raised by arena-adapters and its plugins."""


class ConfigError(AdapterError, ValueError):
    """An option is missing, unknown or has a value of the wrong type or range."""


class ObservationError(AdapterError, ValueError):
    """An observation is missing a key or has the wrong shape, dtype or batch size.

    Raised before anything is sent to a server.
    """


class ActionError(AdapterError, ValueError):
    """An action chunk has the wrong shape (action dimension, horizon, batch size)."""


class TransportError(AdapterError):
    """The connection to a policy server failed (refused, dropped, reset)."""


class TransportTimeout(TransportError, TimeoutError):
    """A policy server did not answer within the configured timeout."""


class ServerError(AdapterError):
    """The policy server answered with an error of its own.

    Attributes:
        server_message: the server's error text, verbatim (a message or a traceback).
    """

    def __init__(self, message: str, server_message: str = "") -> None:
        super().__init__(message)
        self.server_message = server_message or message


class ProtocolError(AdapterError):
    """A reply could not be decoded or does not follow the protocol."""


class PluginError(AdapterError):
    """A plugin failed to import or registered invalid parts."""


class UnknownAdapterError(AdapterError, LookupError):
    """No adapter (or part) of the asked-for name is registered."""
