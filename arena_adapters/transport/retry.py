"""One retry policy for every transport: attempts, exponential backoff with jitter, the deadline.

Only errors marked :attr:`~arena_adapters.errors.AdapterError.retryable` are retried: those where
the server cannot have started on the request (connection refused, an idle connection found
closed before sending). A request that may have executed is never sent again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from arena_adapters.errors import AdapterError, TransportTimeout
from arena_adapters.options import Option
from arena_adapters.transport.deadline import Deadline

T = TypeVar("T")
logger = logging.getLogger(__name__)

RETRY_OPTIONS: tuple[Option, ...] = (
    Option("retry_attempts", int, 2, "resends of a request that cannot have reached the server (refused, stale "
           "connection)", minimum=0),
    Option("retry_backoff", float, 0.05, "seconds before the first resend, doubled each time (with jitter)", minimum=0),
)
"""The options that set a transport's :class:`RetryPolicy`."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a retryable failure is tried again.

    Attributes:
        attempts: resends after the first try.
        backoff: seconds before the first resend; doubled for each further one.
        max_backoff: the longest pause.
        jitter: the pause is scaled by a random factor in ``[1 - jitter, 1]``.
    """

    attempts: int = 2
    backoff: float = 0.05
    max_backoff: float = 2.0
    jitter: float = 0.5

    def pause(self, attempt: int) -> float:
        """Seconds to wait before resend ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * (1.0 - self.jitter * random.random())

    def run(self, call: Callable[[int], T], deadline: Deadline, what: str) -> T:
        """``call(attempt)`` until it succeeds, fails for good, or the deadline would pass.

        Raises:
            the last error; a :class:`TransportTimeout` when the next pause would pass the deadline.
        """
        attempt = 0
        while True:
            try:
                return call(attempt)
            except AdapterError as error:
                if not error.retryable or attempt >= self.attempts:
                    raise
                attempt += 1
                pause = self.pause(attempt)
                if pause >= deadline.remaining():
                    raise TransportTimeout(f"{what}: gave up resending within the deadline: {error.message}") from error
                logger.debug("%s: resend %d after %.3f s: %s", what, attempt, pause, error.message)
                time.sleep(pause)
