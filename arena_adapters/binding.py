"""The error of a reference server that cannot listen, alike for every plugin.

A plugin's server catches what its bind raises (:data:`BIND_ERRORS`, or its library's own error
type) and raises :func:`bind_error` instead, so that ``arena-adapters serve`` and the demo report a
busy port or a bad address as a :class:`~arena_adapters.errors.TransportError`, never a traceback::

    try:
        sock.bind(address)
    except BIND_ERRORS as exc:
        raise bind_error("OpenVLA reference server", f"{host}:{port}", exc) from exc
"""

from __future__ import annotations

from arena_adapters.errors import TransportError

BIND_ERRORS: tuple[type[BaseException], ...] = (OSError, OverflowError)
"""What binding a socket raises for a busy port, a bad address (``OSError``) or a port out of range
(``OverflowError``)."""


def bind_error(server: str, address: str, cause: BaseException) -> TransportError:
    """The :class:`TransportError` for ``server`` failing to listen on ``address`` because of ``cause``.

    The message names the server, the address and the cause, and says what usually fixes it.
    """
    return TransportError(
        f"{server} cannot bind {address}: {cause}; is another server using that port? "
        "Choose another port (0 picks a free one) or stop the other server."
    )
