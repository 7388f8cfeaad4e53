"""The transport kit: every promise a transport makes, written once.

A plugin's transport subclasses :class:`ClientTransport` and supplies only its protocol: how to
open a :class:`Connection` and exchange one message on it (or send and receive apart: a
:class:`SplitConnection`), how to encode a request and how to
decode a reply within :class:`DecodeLimits`. The kit bounds every wait by the call's
:class:`Deadline`, pools connections, fans out per-env requests, resends only what cannot have
reached the server (:class:`RetryPolicy`), maps every failure to a typed
:class:`~arena_adapters.errors.AdapterError` with its endpoint and request, and closes promptly.
Endpoints are parsed by :func:`parse_endpoint`; replicas of a server are spread over by the core
(:class:`ReplicaSet`). Reference servers use :class:`DecodeLimits` for requests too.
"""

from __future__ import annotations

from arena_adapters.transport.client import DEADLINES, ClientTransport
from arena_adapters.transport.connections import Connection, ConnectionPool, IdleCheck, SplitConnection
from arena_adapters.transport.deadline import Deadline, wait_for
from arena_adapters.transport.endpoints import Endpoint, parse_endpoint, split_replicas
from arena_adapters.transport.limits import ALLOWED_DTYPE_KINDS, DecodeLimits, limit_options
from arena_adapters.transport.pipelined import PendingReplies
from arena_adapters.transport.replicas import ReplicaSet, ReplicaStats
from arena_adapters.transport.retry import RETRY_OPTIONS, RetryPolicy
from arena_adapters.transport.serving import (
    BIND_ERRORS,
    SERVER_MAX_REQUEST_BYTES,
    FaultInjector,
    ReplyFault,
    server_limit_options,
    start_failure,
    wait_ready,
)
from arena_adapters.transport.threads import DaemonPool, fan_out
from arena_adapters.transport.watchdog import WatchdogTransport

__all__ = [
    "ALLOWED_DTYPE_KINDS",
    "BIND_ERRORS",
    "DEADLINES",
    "RETRY_OPTIONS",
    "SERVER_MAX_REQUEST_BYTES",
    "ClientTransport",
    "Connection",
    "ConnectionPool",
    "DaemonPool",
    "Deadline",
    "DecodeLimits",
    "Endpoint",
    "FaultInjector",
    "IdleCheck",
    "PendingReplies",
    "ReplicaSet",
    "ReplicaStats",
    "ReplyFault",
    "RetryPolicy",
    "SplitConnection",
    "WatchdogTransport",
    "fan_out",
    "limit_options",
    "parse_endpoint",
    "server_limit_options",
    "split_replicas",
    "start_failure",
    "wait_for",
    "wait_ready",
]
