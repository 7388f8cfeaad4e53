"""Deadlines: the one bound every wait in a call honours.

A call into a transport gets a :class:`Deadline` (a point on the monotonic clock). Every wait it
makes — a socket read, a fan-out, a future, a reconnect pause — waits at most until then, so a
call never outlives its budget however many reads, retries or threads it involves.
"""

from __future__ import annotations

import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from arena_adapters.errors import TransportError, TransportTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """A point in time (``time.monotonic()``) by which a call must end.

    Attributes:
        at: the monotonic time of the deadline.
        budget: the seconds it was made with, for messages.
    """

    at: float
    budget: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.at

    def within(self, seconds: float) -> Deadline:
        """This deadline or ``seconds`` from now, whichever comes first."""
        at = min(self.at, time.monotonic() + seconds)
        return Deadline(at, min(self.budget, seconds))

    def check(self, what: str) -> None:
        """Raise :class:`TransportTimeout` naming ``what`` if the deadline has passed."""
        if self.expired:
            raise TransportTimeout(f"no time left for {what} (deadline of {self.budget:g} s)")


def wait_for(future: Future[T], deadline: Deadline, what: str) -> T:
    """The result of ``future``, waiting no later than ``deadline``.

    Raises:
        TransportTimeout: the future did not finish in time (it is cancelled if it has not started).
        TransportError: the future was cancelled (its transport was closed).
        whatever the future raised.
    """
    try:
        return future.result(timeout=deadline.remaining())
    except FutureTimeout:
        future.cancel()
        raise TransportTimeout(f"{what}: no result within {deadline.budget:g} s") from None
    except CancelledError:
        raise TransportError(f"{what}: cancelled (the transport was closed)") from None
