"""Typed records that plugins register through the hooks in :mod:`arena_adapters.hookspecs`.

A record names a part, says which wire protocol it speaks, and holds the factory that builds it.
Part names are global; by convention they are namespaced by the plugin that registers them
(``"gr00t.zmq"``, ``"gr00t.droid"``). When an adapter refers to a part that is not registered yet,
the plugin named by the part's namespace (the text before the first ``.``) is loaded to provide it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from arena_adapters.options import Option

ANY_PROTOCOL = "*"
"""The protocol of a part that works with any transport (for example a pass-through translator)."""

NULL_POLICY = "null"
"""``policy="null"`` asks a reference server for a constant chunk computed with no work per request
(``arena-adapters serve NAME --policy null``): what is left of a request's time is the client's and
the wire's."""


@dataclass(frozen=True)
class PartRecord:
    """What every part record has.

    Attributes:
        name: the global part name, namespaced by plugin (``"gr00t.droid"``).
        factory: called with the resolved keyword options (see ``options``) to build the part.
        protocol: the wire protocol the part speaks (``"gr00t"``, ``"openpi"``, ...), or ``"*"``.
        description: one line for ``arena-adapters info``.
        options: the keyword options ``factory`` takes.
    """

    name: str
    factory: Callable[..., Any]
    protocol: str
    description: str = ""
    options: tuple[Option, ...] = ()

    @property
    def kind(self) -> str:
        """A human name of the record kind, for messages."""
        return "part"


@dataclass(frozen=True)
class ObservationTranslatorRecord(PartRecord):
    """Registers an :class:`~arena_adapters.parts.ObservationTranslator` factory."""

    @property
    def kind(self) -> str:
        return "observation translator"


@dataclass(frozen=True)
class ActionTranslatorRecord(PartRecord):
    """Registers an :class:`~arena_adapters.parts.ActionTranslator` factory."""

    @property
    def kind(self) -> str:
        return "action translator"


@dataclass(frozen=True)
class TransportRecord(PartRecord):
    """Registers an :class:`~arena_adapters.parts.InferenceTransport` factory.

    Attributes:
        capabilities: free-form flags, e.g. ``"batched"`` (one request carries many envs),
            ``"reset"`` (the server has a reset), ``"metadata"``.
    """

    capabilities: frozenset[str] = frozenset()

    @property
    def kind(self) -> str:
        return "transport"


@dataclass(frozen=True)
class ReferenceServerRecord(PartRecord):
    """Registers a reference server: ``factory(policy=..., host=..., port=..., **options)`` starts
    it and returns a :class:`~arena_adapters.parts.RunningServer`. ``policy`` is a Python object or
    callable, ``None`` for the plugin's deterministic built-in test policy, or :data:`NULL_POLICY`
    (``"null"``) for a constant chunk that costs no work."""

    @property
    def kind(self) -> str:
        return "reference server"


@dataclass(frozen=True)
class ProbeRecord(PartRecord):
    """Registers a probe: ``factory(endpoint=..., timeout=..., **options)`` checks a live server and
    returns a :class:`~arena_adapters.parts.ProbeReport` (it never raises for a server fault)."""

    @property
    def kind(self) -> str:
        return "probe"


@dataclass(frozen=True)
class ServedExpertRecord(PartRecord):
    """Registers how an adapter serves the scripted expert of a built-in environment (``arena-adapters
    demo --adapter NAME``).

    ``factory(**options)`` builds the policy object that the adapter's reference server serves, as
    ``reference_server.factory(policy=factory(), **server_options)``: it takes the observation as
    that protocol hands it to a model, calls the environment's protocol-free expert (for ``reach``:
    :class:`arena_adapters.envs.reach_expert.ReachExpert`) and replies in the protocol's format.
    With ``in_process``, the object is handed to the adapter itself as its ``policy`` option instead
    (no server; the ``local`` adapter).

    Attributes:
        adapter: the adapter the expert is served through (loaded with ``load_policy(adapter, ...)``).
        environment: the built-in environment whose expert it serves.
        server_options: options of the adapter's reference server that the served policy needs.
        client_options: adapter options that fit the served expert (``execute_steps``, ...).
        in_process: hand the policy object to the adapter instead of a reference server.
    """

    adapter: str = ""
    environment: str = "reach"
    server_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    client_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    in_process: bool = False

    @property
    def kind(self) -> str:
        return "served expert"


@dataclass(frozen=True)
class AdapterRecord:
    """Names a composition of parts that a runner can load by name.

    Attributes:
        name: the adapter name; a plugin's entry-point name is the name of its main adapter.
        transport, observation_translator, action_translator: part names.
        description: one line for ``arena-adapters list``.
        protocol: the wire protocol, for listings.
        defaults: option values used unless the user gives others (e.g. ``{"execute_steps": 8}``).
        reference_server, probe: optional part names for ``arena-adapters serve`` / ``ping``.
        example_observation: optional ``fn(num_envs, device) -> observation``: a valid Isaac Lab style
            observation for this adapter's default translators (used by the conformance kit,
            ``arena-adapters check`` and examples).
    """

    name: str
    transport: str
    observation_translator: str
    action_translator: str
    description: str = ""
    protocol: str = ""
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    reference_server: str | None = None
    probe: str | None = None
    example_observation: Callable[..., Any] | None = None

    @property
    def kind(self) -> str:
        return "adapter"

    def part_names(self) -> dict[str, str]:
        """The three part names keyed by role."""
        return {
            "observation_translator": self.observation_translator,
            "action_translator": self.action_translator,
            "transport": self.transport,
        }


Record = PartRecord | AdapterRecord
"""Anything a hook can register."""


def namespace_of(part_name: str) -> str:
    """The plugin namespace of a part name: ``"gr00t.droid"`` -> ``"gr00t"``."""
    return part_name.split(".", 1)[0]
