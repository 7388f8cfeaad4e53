"""What every probe (``arena-adapters ping``) does alike: timed steps that never raise, and a
latency figure over repeated calls.

A plugin's probe lists its protocol's checks as steps of a :class:`ProbeRun`::

    run = ProbeRun(endpoint)
    ok, reply = run.step("ping", lambda: ("ok", transport.ping()))
    if ok:
        run.latency("latency x5", lambda: transport.infer(request), repeats=5)
    return run.report

A step's function returns ``(detail, value)`` or raises: an :class:`~arena_adapters.errors.AdapterError`
(or any exception: a probe reports, it does not crash) becomes a failed step with the error's text.
A step may also fail by raising :class:`StepFailed` with the reason.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

from arena_adapters.parts import ProbeReport, ProbeStep

T = TypeVar("T")


class StepFailed(Exception):
    """Raised by a probe step's function to fail the step with this message."""


class ProbeRun:
    """Builds a :class:`~arena_adapters.parts.ProbeReport` one timed step at a time."""

    def __init__(self, endpoint: str) -> None:
        self.report = ProbeReport(endpoint=endpoint)

    @property
    def ok(self) -> bool:
        """True while every step so far passed."""
        return all(step.ok for step in self.report.steps)

    def step(self, name: str, function: Callable[[], tuple[str, T]]) -> tuple[bool, T | None]:
        """Run ``function`` as the step ``name``: ``(passed, value)``; never raises."""
        started = time.perf_counter()
        try:
            detail, value = function()
        except Exception as exc:
            text = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {_first_line(exc)}"
            self.report.steps.append(ProbeStep(name, False, time.perf_counter() - started, text))
            return False, None
        self.report.steps.append(ProbeStep(name, True, time.perf_counter() - started, detail))
        return True, value

    def fail(self, name: str, detail: str) -> None:
        """Record a failed step without running anything (a bad option, say)."""
        self.report.steps.append(ProbeStep(name, False, 0.0, detail))

    def latency(self, name: str, call: Callable[[], Any], repeats: int) -> bool:
        """Time ``repeats`` calls of ``call`` as one step whose detail gives p50, mean and max."""

        def timed() -> tuple[str, None]:
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            ms = [sample * 1e3 for sample in samples]
            return (f"p50 {statistics.median(ms):.2f} ms, mean {statistics.fmean(ms):.2f} ms, "
                    f"max {max(ms):.2f} ms over {repeats}"), None

        return self.step(name, timed)[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
