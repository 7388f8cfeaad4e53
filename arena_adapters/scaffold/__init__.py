"""``arena-adapters new-plugin``: a plugin package that passes ``arena-adapters check`` as generated.

Two kinds: a plugin that reuses an installed protocol's transport, reference server and probe and
brings its own translators (``reuse_transport="gr00t.zmq"``), or a plugin with a protocol of its own
(transport on the transport kit, codec, reference server, probe and translators). Both carry a test
module that runs the conformance kit. The templates live in ``templates/``; names in them are
``${name}`` (the adapter), ``${package}`` (the import package) and ``${distribution}``.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from arena_adapters.errors import ConfigError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
REUSABLE_TRANSPORTS = {"gr00t.zmq": ("reuse_gr00t", "arena-adapters-gr00t>=0.1")}
"""Transports a generated plugin can reuse: the template of its translators and the dependency."""


def generate(name: str, directory: Path, *, reuse_transport: str | None = None,
             description: str | None = None) -> Path:
    """Write the package of plugin ``name`` into ``directory/arena-adapters-<name>`` and return that path.

    Raises:
        ConfigError: a name that is not a lowercase identifier, a transport without a template, or
            a target that exists already.
    """
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"plugin name {name!r}: expected a lowercase identifier of 2-31 characters (a-z, 0-9, _)")
    if reuse_transport is not None and reuse_transport not in REUSABLE_TRANSPORTS:
        raise ConfigError(f"--reuse-transport {reuse_transport!r}: templates exist for {sorted(REUSABLE_TRANSPORTS)}")
    distribution = f"arena-adapters-{name.replace('_', '-')}"
    target = Path(directory) / distribution
    if target.exists():
        raise ConfigError(f"{target} exists already: pick another directory or name")
    package = f"arena_adapters_{name}"
    variant, dependency = REUSABLE_TRANSPORTS[reuse_transport] if reuse_transport else ("new_protocol", "")
    values = {
        "name": name,
        "package": package,
        "distribution": distribution,
        "title": name.upper() if len(name) <= 4 else name.capitalize(),
        "description": description or (f"{name}: translators on the {reuse_transport} transport" if reuse_transport
                                       else f"{name}: a protocol of its own"),
        "dependencies": f'\n    "{dependency}",' if dependency else "",
        "layout_notes": ("- the transport, reference server and probe are those of `" + reuse_transport + "`."
                         if reuse_transport else "- `src/" + package + "/transport.py`, `codec.py`, `server.py`, "
                         "`probe.py`: the protocol. The transport kit keeps deadlines, limits, errors and close."),
    }
    templates = resources.files(__package__).joinpath("templates")
    _render(templates.joinpath("common"), target, values, package)
    _render(templates.joinpath(variant), target, values, package)
    (target / "src" / package / "py.typed").write_text("")
    return target


def _render(source: Traversable, target: Path, values: dict[str, str], package: str) -> None:
    for entry in source.iterdir():
        name = "src" if entry.name == "src" else (package if entry.name == "pkg" else entry.name)
        if entry.is_dir():
            _render(entry, target / name, values, package)
        elif entry.name.endswith(".tmpl"):
            destination = target / name.removesuffix(".tmpl")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(Template(entry.read_text()).substitute(values))
