"""A policy server in a background process: started, waited for, and always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from arena_adapters.envs.expert_server import (
    EXPERT_POLICY,
    READY_PREFIX,
    reference_server_factory,
    served_expert,
)
from arena_adapters.errors import ConfigError, TransportError
from arena_adapters.importing import import_object


class ServerProcess:
    """Runs ``python -m arena_adapters.envs.expert_server --adapter NAME`` (or any command printing
    ``ENDPOINT <url>`` when ready) in its own process group.

    Its standard input is a pipe that the server watches: if this process dies without calling
    :meth:`stop`, the server exits too. Ctrl-C reaches only this process (the server has its own
    session), which then stops the server in order.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with ServerProcess.for_expert("gr00t") as server:
            policy = load_policy("gr00t", endpoint=server.endpoint)
    """

    def __init__(self, command: Sequence[str], *, ready_timeout_s: float = 60.0) -> None:
        self.command = list(command)
        self.ready_timeout_s = ready_timeout_s
        self.endpoint = ""
        self.started_in_s = 0.0
        self._process: subprocess.Popen[str] | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in __exit__

    @staticmethod
    def for_expert(adapter: str, *, host: str = "127.0.0.1", port: int = 0, policy: str = EXPERT_POLICY,
                   environment: str = "reach", server_options: Mapping[str, Any] | None = None) -> ServerProcess:
        """``environment``'s expert (or, with ``policy="null"``, the server's zero-work policy)
        served by ``adapter``'s reference server, as the adapter's plugin registered it
        (``server_options`` override the registered ones).

        The factories are looked up here and passed to the process by import path, so that it
        imports only the server and the served policy (and starts quickly); factories that cannot
        be imported by name are looked up by the process itself.

        Raises:
            ConfigError: the adapter cannot serve the expert (see
                :func:`~arena_adapters.envs.expert_server.served_expert`) or has no server, or
                ``server_options`` cannot be passed to the process.
        """
        record = served_expert(adapter, environment)
        if record.in_process:
            raise ConfigError(f"adapter {adapter!r} runs the {environment!r} expert in process; it has no server")
        options = {**record.server_options, **(server_options or {})}
        serving = _serving_arguments(reference_server_factory(adapter), record.factory, options)
        if serving is None:
            if server_options:
                raise ConfigError(f"server_options {dict(server_options)!r}: the {adapter!r} expert's server "
                                  f"cannot be started with options (its factories or options are not importable "
                                  f"by name or JSON)")
            serving = ["--adapter", adapter, "--environment", environment]
        return ServerProcess([*_expert_server_command(host, port, policy), *serving])

    @staticmethod
    def for_policy(adapter: str, factory: Any, server_options: Mapping[str, Any], *, host: str = "127.0.0.1",
                   port: int = 0, policy: str = EXPERT_POLICY) -> ServerProcess:
        """The policy ``factory()`` makes (or, with ``policy="null"``, the server's zero-work policy)
        served by ``adapter``'s reference server with ``server_options``.

        Raises:
            ConfigError: ``factory`` or the options cannot be passed to a process (not importable by
                name; not JSON).
            AdapterError: the adapter has no reference server.
        """
        serving = _serving_arguments(reference_server_factory(adapter), factory, server_options)
        if serving is None:
            raise ConfigError(f"{factory!r} and the options {dict(server_options)!r} must be importable by name "
                              f"and JSON to be passed to a server process")
        return ServerProcess([*_expert_server_command(host, port, policy), *serving])

    @property
    def pid(self) -> int | None:
        """The server's process id (``None`` before :meth:`start`)."""
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        """Start the process and wait until it prints its endpoint; return the endpoint.

        Raises:
            TransportError: the process exited or stayed silent for ``ready_timeout_s`` (its
                stderr is in the message); it is stopped before raising.
        """
        began = time.perf_counter()
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines: list[str] = []
        reader = threading.Thread(target=self._read_ready_line, args=(lines,), daemon=True)
        reader.start()
        reader.join(self.ready_timeout_s)
        ready = [line for line in lines if line.startswith(READY_PREFIX)]
        if not ready:
            if not reader.is_alive():  # stdout closed: the process is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(5.0)
            code = self._process.poll()
            reason = f"exited with code {code}" if code is not None else (
                f"did not report ready in {self.ready_timeout_s:g} s")
            details = self.stderr_tail()
            self.stop(grace_s=0.5)
            raise TransportError(f"the server process {reason}: {' '.join(self.command)}\n{details}".rstrip())
        self.endpoint = ready[0][len(READY_PREFIX):].strip()
        self.started_in_s = time.perf_counter() - began
        return self.endpoint

    def _read_ready_line(self, lines: list[str]) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            lines.append(line)
            if line.startswith(READY_PREFIX):
                return

    def stderr_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the server wrote to stderr."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-limit:]

    def stop(self, grace_s: float = 3.0) -> None:
        """Stop the server: close its stdin, then SIGTERM, then SIGKILL, each given ``grace_s`` to
        work. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            for step in (self._close_stdin, process.terminate, process.kill):
                step()
                try:
                    process.wait(grace_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()

    def _close_stdin(self) -> None:
        assert self._process is not None
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(OSError):
                self._process.stdin.close()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._stderr.close()


def _expert_server_command(host: str, port: int, policy: str) -> list[str]:
    return [sys.executable, "-m", "arena_adapters.envs.expert_server", "--host", host, "--port", str(port),
            "--policy", policy]


def _serving_arguments(server_factory: Any, factory: Any, options: Mapping[str, Any]) -> list[str] | None:
    """``--server``, ``--expert`` and ``--server-options`` naming them, or None if one cannot be named."""
    server, expert, text = _import_path(server_factory), _import_path(factory), _as_json(options)
    if not (server and expert and text):
        return None
    return ["--server", server, "--expert", expert, "--server-options", text]


def _import_path(target: Any) -> str:
    """``"module:qualname"`` that imports ``target`` back, or ``""`` if there is none."""
    path = f"{getattr(target, '__module__', '')}:{getattr(target, '__qualname__', '')}"
    try:
        return path if import_object(path) is target else ""
    except (ConfigError, ValueError):
        return ""


def _as_json(options: Any) -> str:
    """The options as JSON text, or ``""`` if JSON cannot carry them exactly."""
    try:
        text = json.dumps(dict(options))
        return text if json.loads(text) == dict(options) else ""
    except (TypeError, ValueError):
        return ""
