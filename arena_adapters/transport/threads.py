"""Daemon worker threads and the bounded fan-out of per-env requests.

The pools here use daemon threads: a request stuck in a dead server's socket never holds the
interpreter's exit. Every wait on their results is bounded by a :class:`Deadline`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import Any, TypeVar

from arena_adapters.errors import AdapterError, TransportError, TransportTimeout
from arena_adapters.transport.deadline import Deadline

T = TypeVar("T")

_STOP = object()


class DaemonPool:
    """A fixed number of daemon threads, started on first use, running calls first in, first out."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._unfinished = 0  # calls queued or running
        self._closed = False

    def submit(self, function: Callable[[], T]) -> Future[T]:
        """Queue ``function``; its result or exception comes back through the future.

        Raises:
            TransportError: the pool is closed.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise TransportError(f"{self.name}: closed")
            self._unfinished += 1
            if self._unfinished > len(self._threads) and len(self._threads) < self.size:
                thread = threading.Thread(target=self._run, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._queue.put((future, function))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, function = item
            try:
                if future.set_running_or_notify_cancel():
                    future.set_result(function())
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._unfinished -= 1
            # Drop the call (and the arrays it holds) now: a daemon thread that still holds tensors
            # while the interpreter shuts down can free them after torch is gone.
            del item, future, function

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return len(self._threads)

    def close(self) -> None:
        """Cancel queued calls and let every thread end after its current call. Idempotent; does not wait."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(_STOP)


def fan_out(
    pool: DaemonPool,
    calls: Sequence[Callable[[], T]],
    deadline: Deadline,
    what: str,
    on_timeout: Callable[[], None] | None = None,
) -> list[T]:
    """Run ``calls`` concurrently on ``pool`` and return their results in order.

    Waits no later than ``deadline``. On a timeout the unfinished calls are cancelled, ``on_timeout``
    (which should abort their connections) is called, and :class:`TransportTimeout` is raised. When a
    call fails, the unfinished ones are cancelled and aborted alike (and waited for, within the
    deadline), then the error of the lowest failing index is raised, naming its index.
    """
    if len(calls) == 1:
        return [calls[0]()]
    futures = [pool.submit(call) for call in calls]
    done, pending = wait(futures, timeout=deadline.remaining(), return_when=FIRST_EXCEPTION)
    failed = [i for i, future in enumerate(futures) if future in done and future.exception() is not None]
    if failed:
        for future in pending:
            future.cancel()
        if pending and on_timeout is not None:
            on_timeout()  # the siblings of a failed call must not go on (or resend) behind our back
        wait(pending, timeout=deadline.remaining())
        index = failed[0]
        error = futures[index].exception()
        assert error is not None
        raise name_request(error, index, len(calls)) if isinstance(error, AdapterError) else error
    if pending:
        for future in pending:
            future.cancel()
        if on_timeout is not None:
            on_timeout()
        raise TransportTimeout(
            f"{what}: {len(pending)} of {len(calls)} requests got no reply within {deadline.budget:g} s"
        )
    return [future.result() for future in futures]


def name_request(error: AdapterError, index: int, count: int) -> AdapterError:
    """``error`` of request ``index`` of ``count``, its message prefixed ``env request I of N:``
    (when there are several); returns the error itself (for ``raise``)."""
    if count > 1:
        error.message = f"env request {index} of {count}: {error.message}"
        error.args = (error.message,)
    return error
