"""Progress of a running evaluation: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from arena_adapters.evaluation.episodes import Episode


@dataclass(frozen=True)
class EvalProgress:
    """A snapshot of a running evaluation, handed to progress displays and callbacks after each step.

    Attributes:
        step: env steps taken.
        finished: counted episodes finished.
        successes: counted episodes that succeeded.
        num_episodes: the episode budget.
        in_flight: counted episodes running now.
        queries: inference requests so far.
        env_requests: env observations sent so far.
        elapsed_s: wall time since the first reset.
        new_episodes: the counted episodes that finished in this step (for callbacks that stream
            results, e.g. shards of a Ray evaluation).
    """

    step: int
    finished: int
    successes: int
    num_episodes: int
    in_flight: int
    queries: int
    env_requests: int
    elapsed_s: float
    new_episodes: tuple[Episode, ...] = ()

    @property
    def success_rate(self) -> float:
        """Successes over finished episodes so far."""
        return self.successes / self.finished if self.finished else 0.0

    @property
    def requests_per_s(self) -> float:
        """Inference requests per second so far."""
        return self.queries / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        """Env steps per second so far."""
        return self.step / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class ProgressDisplay:
    """Shows :class:`EvalProgress` snapshots.

    On a terminal: one line redrawn in place (at most every ``refresh_s``) with a bar, episodes
    done, success so far, requests/s and steps/s. Elsewhere (a log file, CI): a plain line whenever
    another tenth of the episodes has finished or ``log_interval_s`` has passed.

    Args:
        stream: where to write (default ``sys.stderr``).
        label: a prefix, e.g. ``"reach/gr00t"``.
        tty: force the terminal (True) or log (False) style; default: ``stream.isatty()``.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        label: str = "eval",
        tty: bool | None = None,
        width: int = 24,
        refresh_s: float = 0.1,
        log_interval_s: float = 10.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.width = width
        self.refresh_s = refresh_s
        self.log_interval_s = log_interval_s
        self._last_draw = -float("inf")
        self._last_log = 0.0
        self._logged_tenths = 0
        self._drawn = False
        self._last: EvalProgress | None = None

    def __call__(self, progress: EvalProgress) -> None:
        """Show a snapshot (rate-limited)."""
        self._last = progress
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= self.refresh_s or progress.finished >= progress.num_episodes:
                self._draw(progress)
                self._last_draw = now
            return
        tenths = progress.finished * 10 // max(progress.num_episodes, 1)
        if tenths > self._logged_tenths or progress.elapsed_s - self._last_log >= self.log_interval_s:
            self._logged_tenths = max(tenths, self._logged_tenths)
            self._last_log = progress.elapsed_s
            self.stream.write(self.line(progress) + "\n")
            self.stream.flush()

    def line(self, progress: EvalProgress) -> str:
        """The plain log line of a snapshot."""
        return (
            f"[{self.label}] {progress.finished}/{progress.num_episodes} episodes, "
            f"success {progress.success_rate * 100:.1f}%, {progress.requests_per_s:.1f} req/s, "
            f"{progress.steps_per_s:.1f} steps/s, {progress.elapsed_s:.1f} s"
        )

    def bar(self, progress: EvalProgress) -> str:
        """The terminal line of a snapshot."""
        done = progress.finished / max(progress.num_episodes, 1)
        filled = int(done * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"{self.label} [{bar}] {progress.finished}/{progress.num_episodes} episodes | "
            f"success {progress.success_rate * 100:5.1f}% | {progress.requests_per_s:6.1f} req/s | "
            f"{progress.steps_per_s:6.1f} steps/s | {_clock(progress.elapsed_s)}"
        )

    def _draw(self, progress: EvalProgress) -> None:
        self.stream.write("\r\x1b[2K" + self.bar(progress))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Finish the display: the last state is shown, and the terminal line is ended."""
        if self._last is not None:
            if self.tty:
                self._draw(self._last)
            elif self._last_log != self._last.elapsed_s:
                self.stream.write(self.line(self._last) + "\n")
        if self._drawn:
            self.stream.write("\n")
        self.stream.flush()
        self._drawn = False
        self._last = None
