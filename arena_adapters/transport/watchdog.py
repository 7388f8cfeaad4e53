"""Deadlines for transports that do not keep them themselves.

A transport built on :class:`~arena_adapters.transport.ClientTransport` honours every call's
deadline. One that does not declare the ``"deadlines"`` capability (an in-process callable, a
third party's own client) is wrapped in a :class:`WatchdogTransport`: its calls run on one daemon
thread and the caller waits no later than the deadline, so a hung call gives
:class:`~arena_adapters.errors.TransportTimeout` instead of a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, TypeVar

from arena_adapters.errors import AdapterError, TransportError
from arena_adapters.parts import EnvIds, Health, InferenceTransport
from arena_adapters.transport.deadline import Deadline, wait_for
from arena_adapters.transport.threads import DaemonPool

T = TypeVar("T")
logger = logging.getLogger(__name__)


class WatchdogTransport:
    """Runs the calls of ``inner`` on one daemon thread, each waited for until its deadline.

    Calls keep their order (``inner`` need not be thread-safe). After a call overran its deadline,
    later calls queue behind it and end at their own deadlines too.
    """

    def __init__(self, inner: InferenceTransport, timeout: float, name: str) -> None:
        self.inner = inner
        self.timeout = float(timeout)
        self.name = name
        self._thread = DaemonPool(1, f"arena-adapters-{name}-watchdog")
        self._closed = False
        self._closing: Future[None] = Future()  # done once closed: ends the waits of calls in flight

    def _run(self, function: Callable[[], T], deadline: Deadline | None, what: str) -> T:
        if self._closed:
            raise TransportError(f"{what}: the {self.name} transport is closed")
        deadline = deadline if deadline is not None else Deadline.after(self.timeout)
        try:
            future = self._thread.submit(function)
            pending: list[Future[Any]] = [future, self._closing]
            wait(pending, timeout=deadline.remaining(), return_when=FIRST_COMPLETED)
            if not future.done() and self._closing.done():
                raise TransportError(f"{self.name} {what}: the transport was closed with the call in flight")
            return wait_for(future, deadline, f"{self.name} {what}")
        except AdapterError:
            raise
        except Exception as exc:
            raise TransportError(f"the {self.name} transport failed in {what}: {type(exc).__name__}: {exc}") from exc

    def connect(self, deadline: Deadline | None = None) -> None:
        """``inner.connect()`` within the deadline."""
        self._run(self.inner.connect, deadline, "connect")

    def health(self, deadline: Deadline | None = None) -> Health:
        """``inner.health()`` within the deadline; a failure is an unhealthy result."""
        try:
            return self._run(self.inner.health, deadline, "health")
        except AdapterError as error:
            return Health(ok=False, detail=str(error))

    def metadata(self, deadline: Deadline | None = None) -> Mapping[str, Any]:
        """``inner.metadata()`` within the deadline."""
        return self._run(self.inner.metadata, deadline, "metadata")

    def infer(self, request: Any, deadline: Deadline | None = None) -> Any:
        """``inner.infer(request)`` within the deadline."""
        return self._run(lambda: self.inner.infer(request), deadline, "inference")

    def reset(self, env_ids: EnvIds | None, deadline: Deadline | None = None) -> None:
        """``inner.reset(env_ids)`` within the deadline."""
        self._run(lambda: self.inner.reset(env_ids), deadline, "reset")

    def close(self) -> None:
        """Close ``inner`` (on the calling thread) and let the watchdog thread end. Idempotent."""
        if not self._closed:
            self._closed = True
            self._closing.set_result(None)
            self._thread.close()
            try:
                self.inner.close()
            except Exception as exc:  # close is final whatever the part does
                logger.warning("closing the %s transport failed: %s: %s", self.name, type(exc).__name__, exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
