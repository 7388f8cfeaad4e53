"""The vla-eval client transport: one session per env, built on the arena-adapters transport kit.

:meth:`VlaEvalTransport.infer` takes the list the observation translator makes, one message per
queried env (``{"env_id", "task", "observation"}``), and sends each on its env's own session,
concurrently (at most ``max_concurrency`` at once), all within one deadline. A session opens on its
env's first request (connect + HELLO) and starts an episode (``EPISODE_START``) before its first
observation; :meth:`VlaEvalTransport.reset` ends those envs' episodes (``EPISODE_END``) so that the
next observation starts a new one. A session that failed is dropped: the env's next request opens
a new one (and starts a new episode, as the server lost the old one's state).

The kit supplies the rest: deadlines, resends of what cannot have reached the server (refused, or a
session found closed before the message went out), typed errors naming the endpoint, limits, and a
final, prompt :meth:`close` that aborts every session in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from arena_adapters import plugin as ap
from arena_adapters_vlaeval import codec
from arena_adapters_vlaeval.session import Session

DEFAULT_PORT = 8000
"""The port vla-eval model servers listen on by default."""


class VlaEvalTransport(ap.ClientTransport):
    """The vla-eval model-server protocol: WebSocket + msgpack, one session per env.

    Args:
        endpoint: ``ws://HOST:PORT`` of one model server.
        timeout: seconds for one call (connecting, handshakes and every env's reply included).
        image_format: how camera images travel: ``raw`` (fastest), ``png`` (lossless, smaller) or
            ``jpeg`` (lossy, smallest); every vla-eval server decodes all three.
        benchmark: sent in HELLO as the client's benchmark name.
        max_concurrency: env requests in flight at once.
        max_message_bytes, max_array_bytes, max_depth: decode limits for replies.
        retry_attempts, retry_backoff: resends of what cannot have reached the server.
    """

    protocol_title = "vla-eval"
    schemes = ("ws",)
    default_port = DEFAULT_PORT
    per_env_requests = True

    def __init__(self, endpoint: str = f"ws://127.0.0.1:{DEFAULT_PORT}", timeout: float = 30.0, *,
                 image_format: codec.ImageFormat = "raw", benchmark: str = "isaaclab-arena",
                 max_concurrency: int = 16,
                 max_message_bytes: int = ap.DecodeLimits.max_message_bytes,
                 max_array_bytes: int = ap.DecodeLimits.max_array_bytes, max_depth: int = ap.DecodeLimits.max_depth,
                 retry_attempts: int = 2, retry_backoff: float = 0.05) -> None:
        if image_format not in codec.IMAGE_FORMATS:
            raise ap.ConfigError(f"option 'image_format': expected one of {list(codec.IMAGE_FORMATS)}, "
                                 f"got {image_format!r}")
        limits = ap.DecodeLimits(max_message_bytes=max_message_bytes, max_array_bytes=max_array_bytes,
                                 max_depth=max_depth)
        super().__init__(endpoint, timeout=timeout, limits=limits, max_concurrency=1,
                         retry=ap.RetryPolicy(attempts=retry_attempts, backoff=retry_backoff))
        self.image_format: codec.ImageFormat = image_format
        self.hello = {"benchmark": benchmark} if benchmark else {}
        self.max_concurrency = max(1, int(max_concurrency))
        self._sessions: dict[int, Session] = {}
        self._opening: set[Session] = set()
        self._lock = threading.Lock()
        self._workers = ap.DaemonPool(self.max_concurrency, "arena-adapters-vlaeval")
        self._server_info: Mapping[str, Any] = {}

    @property
    def url(self) -> str:
        """The WebSocket URL of the server."""
        return f"ws://{self.endpoint.host}:{self.endpoint.port}"

    # ----------------------------------------------------------------- kit: one connection

    def open_connection(self, deadline: ap.Deadline) -> Session:
        """A new session (connect + HELLO): used by :meth:`connect` and :meth:`health`."""
        session = Session.connect(self.url, deadline, limits=self.limits, image_format=self.image_format)
        with self._lock:
            if self.closed:
                session.abort()
                raise ap.TransportError("the vla-eval transport was closed")
            self._opening.add(session)
        try:
            session.handshake(deadline, self.hello)
        finally:
            with self._lock:
                self._opening.discard(session)
        self._server_info = session.server_info
        return session

    def encode(self, message: Any) -> Any:
        """Messages are packed by their session (each numbers its own); nothing to do here."""
        return message

    def decode(self, data: bytes) -> Any:
        """An ACTION message's payload."""
        return codec.unpack(data, self.limits).payload

    # ----------------------------------------------------------------------- env sessions

    def infer(self, request: Any, deadline: ap.Deadline | None = None) -> Any:
        """Send each env's observation on its session and return the ACTION payloads in order.

        ``request`` is a list of ``{"env_id": int, "task": map, "observation": map}`` (one per
        queried env, as :class:`~arena_adapters_vlaeval.translators.Observations` makes it).

        Raises:
            TransportTimeout, TransportError, ServerError, ProtocolError: the first failing env's,
                naming its index; an error names the endpoint.
        """
        deadline = self.deadline(deadline)
        self._check_open("inference")
        messages = list(request) if isinstance(request, Sequence) and not isinstance(request, Mapping) else [request]
        for message in messages:
            _check_message(message)
        calls = [partial(self._act, message, deadline) for message in messages]
        if not calls:
            return []
        try:
            return ap.fan_out(self._workers, calls, deadline, "vla-eval inference", self._abort_busy)
        except ap.AdapterError as error:
            if self.closed and not isinstance(error, ap.TransportError):
                error = ap.TransportError("inference: the vla-eval transport was closed")
            raise error.add_context(endpoint=str(self.endpoint), request="inference") from None

    def _act(self, message: Mapping[str, Any], deadline: ap.Deadline) -> dict[str, Any]:
        env_id = int(message["env_id"])
        return self.retry.run(lambda attempt: self._act_once(env_id, message, deadline), deadline,
                              f"env {env_id} inference")

    def _act_once(self, env_id: int, message: Mapping[str, Any], deadline: ap.Deadline) -> dict[str, Any]:
        session = self._session(env_id, deadline)
        if not session.lock.acquire(timeout=deadline.remaining()):
            raise ap.TransportTimeout(f"env {env_id}: its session stayed busy for {deadline.budget:g} s")
        try:
            if not session.in_episode:
                session.start_episode(dict(message.get("task") or {}), deadline)
            return session.act(message["observation"], deadline)
        except BaseException as error:
            self._drop(env_id, session)
            if self.closed:
                raise ap.TransportError(f"env {env_id}: the vla-eval transport was closed") from None
            if isinstance(error, ap.AdapterError):
                raise error.add_context(endpoint=str(self.endpoint)) from None
            if isinstance(error, Exception):
                raise ap.TransportError(f"env {env_id}: vla-eval session failed: {type(error).__name__}: {error}",
                                        endpoint=str(self.endpoint)) from error
            raise
        finally:
            session.lock.release()

    def _session(self, env_id: int, deadline: ap.Deadline) -> Session:
        with self._lock:
            session = self._sessions.get(env_id)
        if session is not None:
            return session
        session = self.open_connection(deadline)
        with self._lock:
            if self.closed:
                session.abort()
                raise ap.TransportError("the vla-eval transport was closed")
            existing = self._sessions.setdefault(env_id, session)
        if existing is not session:
            session.abort()
        return existing

    def _drop(self, env_id: int, session: Session) -> None:
        with self._lock:
            if self._sessions.get(env_id) is session:
                del self._sessions[env_id]
        session.abort()

    def _abort_busy(self) -> None:
        with self._lock:
            busy = [(env_id, s) for env_id, s in self._sessions.items() if s.lock.locked()]
        for env_id, session in busy:
            self._drop(env_id, session)

    @property
    def sessions(self) -> dict[int, Session]:
        """The open sessions by env id (a copy)."""
        with self._lock:
            return dict(self._sessions)

    # ------------------------------------------------------------------ InferenceTransport

    def reset(self, env_ids: ap.EnvIds | None, deadline: ap.Deadline | None = None) -> None:
        """End the episodes of ``env_ids`` (``None``: every env): ``EPISODE_END`` on each open
        session, so that its next observation starts a new episode with ``EPISODE_START``. A session
        that cannot take the message in time is dropped (a new session is a new episode)."""
        deadline = self.deadline(deadline)
        self._check_open("reset")
        wanted = None if env_ids is None else {int(i) for i in env_ids}
        with self._lock:
            targets = [(i, s) for i, s in self._sessions.items() if wanted is None or i in wanted]
        for env_id, session in targets:
            if not session.lock.acquire(timeout=deadline.remaining()):
                self._drop(env_id, session)
                continue
            try:
                session.end_episode(deadline)
            except ap.AdapterError:
                self._drop(env_id, session)
            finally:
                session.lock.release()

    def metadata(self, deadline: ap.Deadline | None = None) -> Mapping[str, Any]:
        """The server's HELLO payload: ``model_server``, ``protocol_version``, ``action_spec``,
        ``observation_params``, ... (connects if no session was opened yet)."""
        if not self._server_info:
            self.connect(deadline)
        return dict(self._server_info)

    def close(self) -> None:
        """Abort every session (requests in flight end with TransportError) and stop the workers."""
        super().close()
        with self._lock:
            sessions = [*self._sessions.values(), *self._opening]
            self._sessions = {}
        for session in sessions:
            session.abort()
        self._workers.close()


def _check_message(message: Any) -> None:
    if not isinstance(message, Mapping) or not isinstance(message.get("observation"), Mapping) \
            or isinstance(message.get("env_id"), bool) or not isinstance(message.get("env_id"), int):
        raise ap.ProtocolError(
            "a vla-eval request is a list of {'env_id': int, 'task': map, 'observation': map}, one per env, "
            f"got an item {ap.describe(message)}")
