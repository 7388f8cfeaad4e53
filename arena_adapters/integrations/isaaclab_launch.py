"""Run an Isaac Lab Arena script with arena-adapters' policies registered by name.

Arena's registry only imports its own policy package, so ``--policy_type arena_adapters_gr00t`` (typed
Arena) or ``--policy_type arena_adapters`` (older Arena) are found only once our module has registered
them in the process. This launcher arranges that, then runs the script as ``__main__``::

    python -m arena_adapters.integrations.isaaclab_launch isaaclab_arena/evaluation/policy_runner.py \\
        --policy_type arena_adapters_gr00t --endpoint tcp://127.0.0.1:5555 ... <environment>

Registration waits until Arena imports ``isaaclab_arena.policy`` (the registry's own lazy import,
after the simulation app has started), so nothing of Isaac Sim is imported early. Dotted paths
(``arena_adapters.integrations.isaaclab_typed.Gr00tAdapterPolicy``) need no launcher.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

TRIGGER_MODULE = "isaaclab_arena.policy"


def register_arena_policies() -> list[str]:
    """Register our policies with the Arena that is loaded: per adapter (typed) or ``arena_adapters`` (older).

    Returns the names registered.
    """
    # by module name, so that a module imported before Arena was (and so built without it) is not reused
    isaaclab_legacy = importlib.import_module("arena_adapters.integrations.isaaclab_legacy")
    isaaclab_typed = importlib.import_module("arena_adapters.integrations.isaaclab_typed")
    try:
        isaaclab_typed.typed_arena_api()
    except ImportError:
        registered = isaaclab_legacy.register_with_arena(import_registry=True)
        return [isaaclab_legacy.AdapterPolicy.name] if registered else []
    names: list[str] = isaaclab_typed.register_all()
    return names


class _RunAfterImport(importlib.abc.MetaPathFinder):
    """Calls ``callback`` right after ``module_name`` has been executed by the import system."""

    def __init__(self, module_name: str, callback: Callable[[], Any]) -> None:
        self.module_name = module_name
        self.callback = callback

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, callback: Callable[[], Any]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._callback()
        except Exception as error:  # never break Arena's own import; the by-name lookup will say what is missing
            warnings.warn(f"arena-adapters: could not register Arena policies: {error}", stacklevel=2)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def install_registration_hook() -> None:
    """Register our policies as soon as Arena's policy package is imported (at once if it already is)."""
    if TRIGGER_MODULE in sys.modules:
        register_arena_policies()
    else:
        sys.meta_path.insert(0, _RunAfterImport(TRIGGER_MODULE, register_arena_policies))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m arena_adapters.integrations.isaaclab_launch SCRIPT [ARGS...]``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if arguments else 2)
    install_registration_hook()
    sys.argv = arguments
    sys.path.insert(0, os.path.dirname(os.path.abspath(arguments[0])))  # as `python SCRIPT` does
    runpy.run_path(arguments[0], run_name="__main__")


if __name__ == "__main__":
    main()
