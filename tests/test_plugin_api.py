"""The plugin author's one import: everything needed to write a plugin, and records that subclass."""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch

import arena_adapters.plugin as ap
from arena_adapters import load_policy
from arena_adapters.local import ChunkActions, PassthroughObservations
from arena_adapters.plugins import PluginRegistry


@dataclass(frozen=True)
class TaggedTransportRecord(ap.TransportRecord):
    """A third party's record that carries one more field."""

    vendor: str = ""


class EchoTransport(ap.ClientTransport):
    """Never connects: the test only loads and inspects it."""

    protocol_title = "Echo"
    schemes = ("echo",)

    def open_connection(self, deadline: ap.Deadline) -> ap.Connection:
        raise ap.TransportError("refused", retryable=False)

    def encode(self, message: object) -> bytes:
        return b""

    def decode(self, data: bytes) -> object:
        return None


def make_plugin() -> types.ModuleType:
    plugin = types.ModuleType("echo_plugin")

    @ap.hookimpl
    def register_transports(register: ap.Register[ap.TransportRecord]) -> None:
        register(TaggedTransportRecord(
            name="echo.tcp", protocol="echo", factory=EchoTransport, vendor="acme",
            capabilities=frozenset({ap.DEADLINES}),
            options=(ap.Option("endpoint", str, "echo://127.0.0.1:9"), ap.Option("timeout", float, 0.5))))

    @ap.hookimpl
    def register_observation_translators(register: ap.Register[ap.ObservationTranslatorRecord]) -> None:
        register(ap.ObservationTranslatorRecord(name="echo.rows", protocol="echo", factory=PassthroughObservations))

    @ap.hookimpl
    def register_action_translators(register: ap.Register[ap.ActionTranslatorRecord]) -> None:
        register(ap.ActionTranslatorRecord(name="echo.chunk", protocol="echo", factory=ChunkActions))

    @ap.hookimpl
    def register_adapters(register: ap.Register[ap.AdapterRecord]) -> None:
        register(ap.AdapterRecord(name="echo", protocol="echo", transport="echo.tcp",
                                  observation_translator="echo.rows", action_translator="echo.chunk",
                                  description="echo"))

    plugin.register_observation_translators = register_observation_translators  # type: ignore[attr-defined]
    plugin.register_action_translators = register_action_translators  # type: ignore[attr-defined]
    plugin.register_transports = register_transports  # type: ignore[attr-defined]
    plugin.register_adapters = register_adapters  # type: ignore[attr-defined]
    return plugin


def test_subclassed_records_register_and_load_like_their_base() -> None:
    registry = PluginRegistry(autoload=False, strict=True)
    registry.register_plugin(make_plugin(), "echo")
    record = registry.part(ap.TransportRecord, "echo.tcp")
    assert isinstance(record, TaggedTransportRecord) and record.vendor == "acme"
    assert registry.provider(record) == "echo"


def test_an_adapter_built_from_the_plugin_api_keeps_the_frameworks_promises() -> None:
    registry = PluginRegistry(autoload=False, strict=True)
    registry.register_plugin(make_plugin(), "echo")
    with load_policy("echo", registry=registry) as policy:
        assert isinstance(policy.transport, EchoTransport)  # declared "deadlines": no watchdog around it
        try:
            policy.get_action({"policy": {"x": torch.zeros(2, 1)}})
        except ap.TransportError as error:
            assert error.adapter == "echo" and "echo://127.0.0.1:9" in str(error)
        else:
            raise AssertionError("a refused connection must be a TransportError")
