"""Plugin discovery and loading.

Plugins are modules registered under the entry-point group ``arena_adapters``; the entry-point name
is the adapter name. Listing reads entry-point metadata only; loading imports just the plugin that
is asked for (plus the plugins whose parts its adapter names). A plugin that fails to import or
registers invalid records is reported with its error and skipped, unless the registry is strict.

Environment variables:
    ``ARENA_ADAPTERS_DISABLE_PLUGIN_AUTOLOAD=1``: read no entry points; only built-in adapters and
    plugins registered in code (:meth:`PluginRegistry.register_plugin`) are available.
    ``ARENA_ADAPTERS_BLOCK_PLUGINS=a,b``: never load the named plugins.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

import pluggy

from arena_adapters import hookspecs
from arena_adapters.errors import PluginError, UnknownAdapterError
from arena_adapters.options import Option
from arena_adapters.records import (
    ActionTranslatorRecord,
    AdapterRecord,
    ObservationTranslatorRecord,
    PartRecord,
    ProbeRecord,
    Record,
    ReferenceServerRecord,
    ServedExpertRecord,
    TransportRecord,
    namespace_of,
)

ENTRY_POINT_GROUP = "arena_adapters"
DISABLE_AUTOLOAD_ENV = "ARENA_ADAPTERS_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_PLUGINS_ENV = "ARENA_ADAPTERS_BLOCK_PLUGINS"

HOOK_RECORD_TYPES: dict[str, type] = {
    "register_observation_translators": ObservationTranslatorRecord,
    "register_action_translators": ActionTranslatorRecord,
    "register_transports": TransportRecord,
    "register_adapters": AdapterRecord,
    "register_reference_servers": ReferenceServerRecord,
    "register_probes": ProbeRecord,
    "register_served_experts": ServedExpertRecord,
}

_BUILTIN_PLUGINS = {"local": "arena_adapters.local"}
_CORE_DISTRIBUTION = "arena-adapters"

FIRST_PARTY_DISTRIBUTIONS: dict[str, str] = {
    "gr00t": "arena-adapters-gr00t",
    "openpi": "arena-adapters-openpi",
    "openvla": "arena-adapters-openvla",
}
"""The distribution that provides each first-party plugin (for install hints)."""


def install_hint(plugin: str) -> str:
    """How to get plugin ``plugin`` when it is not installed: the ``pip install`` for a first-party
    one, else a pointer to the distribution that should provide it."""
    distribution = FIRST_PARTY_DISTRIBUTIONS.get(plugin)
    if distribution is not None:
        return f"install it with: pip install {distribution} (or pip install 'arena-adapters[{plugin}]')"
    return f"install the distribution that provides the arena_adapters plugin {plugin!r}"

R = TypeVar("R", bound=PartRecord)


@dataclass(frozen=True)
class PluginInfo:
    """What is known about a plugin without importing it.

    Attributes:
        name: the entry-point name (the adapter name).
        module: the module the entry point names.
        distribution: the installed distribution that declares it.
        version: that distribution's version.
        builtin: True for adapters that ship inside the core.
    """

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool = False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def core_version() -> str:
    """The installed core distribution's version (``0+unknown`` when not installed)."""
    try:
        return metadata.version(_CORE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


class PluginRegistry:
    """Discovers plugins, loads them on demand and holds the records they register.

    Args:
        autoload: read entry points. Defaults to True unless ``ARENA_ADAPTERS_DISABLE_PLUGIN_AUTOLOAD``
            is set.
        blocked: plugin names never to load, added to those in ``ARENA_ADAPTERS_BLOCK_PLUGINS``.
        strict: raise :class:`PluginError` for any plugin that fails, instead of skipping it
            (the conformance kit uses this).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        blocked: Iterable[str] = (),
        strict: bool = False,
    ) -> None:
        self.autoload = not _env_flag(DISABLE_AUTOLOAD_ENV) if autoload is None else autoload
        self.blocked = set(blocked) | _env_list(BLOCK_PLUGINS_ENV)
        self.strict = strict
        self._manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._manager.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] | None = None
        self._conflicts: dict[str, str] = {}
        self._loaded: set[str] = set()
        self._failures: dict[str, str] = {}
        self._unloadable: dict[str, str] = {}
        self._records: dict[type, dict[str, Record]] = {kind: {} for kind in HOOK_RECORD_TYPES.values()}
        self._providers: dict[tuple[type, str], str] = {}

    # ----------------------------------------------------------------- discovery (no imports)

    def plugins(self) -> dict[str, PluginInfo]:
        """Every known plugin by name, from entry-point metadata and built-ins. Imports nothing."""
        if self._infos is None:
            infos = {
                name: PluginInfo(name, module, _CORE_DISTRIBUTION, core_version(), builtin=True)
                for name, module in _BUILTIN_PLUGINS.items()
            }
            if self.autoload:
                infos.update(self._read_entry_points(set(infos)))
            self._infos = infos
        return self._infos

    def _read_entry_points(self, reserved: set[str]) -> dict[str, PluginInfo]:
        found: dict[str, PluginInfo] = {}
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            info = PluginInfo(
                name=entry_point.name,
                module=entry_point.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
            )
            known = found.get(info.name)
            if info.name in reserved:
                self._conflicts[info.name] = (
                    f"entry point {info.name!r} of {info.distribution} clashes with a built-in adapter"
                )
            elif known is not None and (known.module, known.distribution) != (info.module, info.distribution):
                self._conflicts[info.name] = (
                    f"entry point {info.name!r} is declared by both {known.distribution} "
                    f"({known.module}) and {info.distribution} ({info.module})"
                )
            else:
                found[info.name] = info
        return found

    def available_adapters(self) -> list[str]:
        """Sorted names of the plugins that may be loaded (not blocked). Imports nothing."""
        return sorted(name for name in self.plugins() if name not in self.blocked)

    def status(self, name: str) -> str:
        """``"loaded"``, ``"not loaded"``, ``"blocked"``, ``"failed: <error>"``, or
        ``"not loadable: <reason>"`` once :meth:`check_dependencies` found a part that no installed
        plugin provides."""
        if name in self.blocked:
            return "blocked"
        if name in self._failures:
            return f"failed: {self._failures[name]}"
        if name in self._unloadable:
            return f"not loadable: {self._unloadable[name]}"
        return "loaded" if name in self._loaded else "not loaded"

    @property
    def failures(self) -> dict[str, str]:
        """Plugins that failed to load, with their errors."""
        return dict(self._failures)

    # ---------------------------------------------------------------------------- loading

    def load_plugin(self, name: str) -> None:
        """Import and register the plugin ``name`` (once).

        Raises:
            UnknownAdapterError: no plugin of that name; the message lists the valid names.
            PluginError: the plugin is blocked, or failed to import or validate.
        """
        if name in self._loaded:
            return
        if name in self.blocked:
            raise PluginError(f"plugin {name!r} is blocked (by {BLOCK_PLUGINS_ENV} or the registry)")
        if name in self._failures:
            raise PluginError(f"plugin {name!r} failed to load: {self._failures[name]}")
        if name in self._conflicts:
            self._fail(name, self._conflicts[name])
        info = self.plugins().get(name)
        if info is None:
            raise UnknownAdapterError(self._unknown_message("adapter", name, self.available_adapters()))
        module_name, _, attribute = info.module.partition(":")
        try:
            plugin: Any = importlib.import_module(module_name)
            for part in filter(None, attribute.split(".")):
                plugin = getattr(plugin, part)
        except Exception as exc:  # whatever a plugin's import raises is reported, never fatal
            self._fail(name, f"import of {info.module!r} failed: {type(exc).__name__}: {exc}")
        self.register_plugin(plugin, name)

    def register_plugin(self, plugin: object, name: str) -> None:
        """Register a plugin object (a module or any object with hook implementations).

        Used for entry-point plugins and for plugins registered in code. The plugin's records are
        validated all together; on any problem none of them is kept.

        Raises:
            PluginError: invalid hook implementations or records (always raised, since the caller
                asked for this plugin; it is also remembered in :attr:`failures`).
        """
        if name in self._loaded:
            return
        try:
            self._manager.register(plugin, name=name)
            self._manager.check_pending()
        except Exception as exc:  # pluggy raises several types for bad hook implementations
            self._unregister(plugin)
            self._fail(name, f"invalid hook implementation: {exc}")
        try:
            records = self._collect(plugin)
        except Exception as exc:  # a hook that raises is a plugin failure
            self._unregister(plugin)
            self._fail(name, f"a hook raised {type(exc).__name__}: {exc}")
        problem = self._validate(records) if records else "it registered no adapter or part"
        if problem:
            self._unregister(plugin)
            self._fail(name, problem)
        for record in records:
            self._records[kind_of(record)][record.name] = record
            self._providers[(kind_of(record), record.name)] = name
        self._loaded.add(name)

    def load_all(self) -> None:
        """Load every available plugin; failures are recorded in :attr:`failures`, not raised
        (unless strict)."""
        for name in self.available_adapters():
            try:
                self.load_plugin(name)
            except PluginError:
                if self.strict:
                    raise

    def _unregister(self, plugin: object) -> None:
        if self._manager.is_registered(plugin):
            self._manager.unregister(plugin)

    def _fail(self, name: str, error: str) -> Any:
        self._failures[name] = error
        raise PluginError(f"plugin {name!r} failed to load: {error}")

    def _collect(self, plugin: object) -> list[Record]:
        others = [p for p in self._manager.get_plugins() if p is not plugin]
        collected: list[Record] = []
        for hook_name, record_type in HOOK_RECORD_TYPES.items():
            caller = self._manager.subset_hook_caller(hook_name, remove_plugins=others)

            def register(record: Record, _hook: str = hook_name, _type: type = record_type) -> None:
                if not isinstance(record, _type):
                    raise PluginError(
                        f"{_hook} expects {_type.__name__} records, got {type(record).__name__}"
                    )
                collected.append(record)

            caller(register=register)
        return collected

    def _validate(self, records: list[Record]) -> str:
        seen: set[tuple[type, str]] = set()
        for record in records:
            key = (kind_of(record), record.name)
            if not isinstance(record.name, str) or not record.name:
                return f"a {record.kind} has an empty or non-str name: {record.name!r}"
            if key in seen or record.name in self._records[kind_of(record)]:
                owner = self._providers.get(key, "this plugin")
                return f"{record.kind} {record.name!r} is already registered (by {owner})"
            seen.add(key)
            if isinstance(record, PartRecord):
                if not callable(record.factory):
                    return f"{record.kind} {record.name!r}: factory {record.factory!r} is not callable"
                if not all(isinstance(option, Option) for option in record.options):
                    return f"{record.kind} {record.name!r}: options must be Option instances"
                if isinstance(record, ServedExpertRecord) and not (isinstance(record.adapter, str) and record.adapter):
                    return f"served expert {record.name!r}: adapter must be an adapter name, got {record.adapter!r}"
            else:
                for role, part in record.part_names().items():
                    if not isinstance(part, str) or not part:
                        return f"adapter {record.name!r}: {role} must be a part name, got {part!r}"
        return ""

    def check_dependencies(self, name: str) -> None:
        """Load plugin ``name`` and resolve every part its adapters name, loading the plugins they
        come from (a third-party adapter may reuse ``gr00t.*`` parts, for example).

        Raises:
            PluginError: the plugin failed to load, or a part cannot be resolved; the message names
                the part and the ``pip install`` that provides it. The plugin's :meth:`status`
                says ``not loadable`` from then on.
        """
        self.load_plugin(name)
        for adapter in list(self._records[AdapterRecord].values()):
            if not isinstance(adapter, AdapterRecord) or self.provider(adapter) != name:
                continue
            for record_type, part_name in _needed_parts(adapter):
                try:
                    self.part(record_type, part_name)
                except (UnknownAdapterError, PluginError) as exc:
                    self._unloadable[name] = str(exc)
                    raise PluginError(f"adapter {adapter.name!r} cannot be loaded: {exc}") from exc

    # --------------------------------------------------------------------------- look-ups

    def adapter(self, name: str) -> AdapterRecord:
        """The adapter record ``name``, loading its plugin first.

        Raises:
            UnknownAdapterError: no such adapter; the message lists the valid names.
            PluginError: its plugin failed to load.
        """
        adapters = self._records[AdapterRecord]
        if name not in adapters and name in self.plugins():
            self.load_plugin(name)
        if name not in adapters:
            if name not in self.plugins() and name in FIRST_PARTY_DISTRIBUTIONS:
                raise UnknownAdapterError(
                    f"unknown adapter {name!r}: its plugin is not installed; {install_hint(name)} "
                    f"(installed adapters: {', '.join(self.available_adapters()) or '(none)'})"
                )
            if name in self._loaded:
                raise UnknownAdapterError(
                    f"plugin {name!r} provides parts but no adapter named {name!r}; "
                    f"adapters: {', '.join(self.available_adapters())}"
                )
            raise UnknownAdapterError(self._unknown_message("adapter", name, self.available_adapters()))
        record = adapters[name]
        assert isinstance(record, AdapterRecord)
        return record

    def part(self, record_type: type[R], name: str) -> R:
        """The part record ``name`` of the given kind, loading the plugin of its namespace if needed.

        Raises:
            UnknownAdapterError: no such part; the message lists the registered parts of that kind.
        """
        table = self._records[record_type]
        namespace = namespace_of(name)
        if name not in table and namespace in self.plugins() and namespace not in self._loaded:
            self.load_plugin(namespace)
        if name not in table:
            kind = record_type.__name__.removesuffix("Record")
            if namespace not in self.plugins() and namespace in FIRST_PARTY_DISTRIBUTIONS:
                raise UnknownAdapterError(
                    f"{kind} {name!r} comes from plugin {namespace!r}, which is not installed; "
                    f"{install_hint(namespace)}"
                )
            message = self._unknown_message(kind, name, sorted(table))
            if namespace not in self.plugins():
                message += f" (no installed plugin is named {namespace!r}: {install_hint(namespace)})"
            raise UnknownAdapterError(message)
        record = table[name]
        assert isinstance(record, record_type)
        return record

    def records(self, record_type: type[R]) -> list[R]:
        """Every loaded record of one kind, by name."""
        return [r for _, r in sorted(self._records[record_type].items()) if isinstance(r, record_type)]

    def provider(self, record: Record) -> str:
        """The name of the plugin that registered ``record``."""
        return self._providers[(kind_of(record), record.name)]

    def _unknown_message(self, kind: str, name: str, valid: list[str]) -> str:
        text = f"unknown {kind} {name!r}; valid names: {', '.join(valid) or '(none)'}"
        if self._failures:
            broken = "; ".join(f"{plugin}: {error}" for plugin, error in sorted(self._failures.items()))
            text += f" (plugins that failed to load: {broken})"
        return text


def _needed_parts(adapter: AdapterRecord) -> list[tuple[type[PartRecord], str]]:
    """Every part an adapter names, transport first, then its translators, reference server and probe."""
    from arena_adapters.policy import PART_ROLES  # policy imports this module

    needed: list[tuple[type[PartRecord], str]] = [
        (record_type, adapter.part_names()[role]) for role, record_type in PART_ROLES.items()
    ]
    if adapter.reference_server:
        needed.append((ReferenceServerRecord, adapter.reference_server))
    if adapter.probe:
        needed.append((ProbeRecord, adapter.probe))
    return needed


_default_registry: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    """The process-wide registry used by :func:`arena_adapters.load_policy` and the CLI."""
    global _default_registry
    if _default_registry is None:
        _default_registry = PluginRegistry()
    return _default_registry


def kind_of(record: Record) -> type:
    """The record class of the hook ``record`` was registered through (records may subclass it)."""
    for kind in HOOK_RECORD_TYPES.values():
        if isinstance(record, kind):
            return kind
    return type(record)
