"""The plugin is published the way a third party would: it imports arena_adapters only through
``arena_adapters.plugin`` (and its tests only that, ``arena_adapters.testing`` and the user API
``arena_adapters.load_policy``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _arena_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "arena_adapters":
                modules.update(f"arena_adapters.{alias.name}" for alias in node.names)
            elif node.module.startswith("arena_adapters.") or node.module.startswith("arena_adapters_"):
                modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("arena_adapters"))
    return modules


def test_the_package_imports_nothing_of_arena_adapters_but_the_plugin_api() -> None:
    sources = sorted((ROOT / "src" / "arena_adapters_vlaeval").glob("*.py"))
    assert len(sources) >= 7
    found = {}
    for path in sources:
        foreign = {m for m in _arena_imports(path)
                   if m != "arena_adapters.plugin" and not m.startswith("arena_adapters_vlaeval")}
        if foreign:
            found[path.name] = sorted(foreign)
    assert not found, f"imports outside the public plugin API: {found}"


def test_the_tests_use_only_the_plugin_api_and_the_testing_kit() -> None:
    allowed = ("arena_adapters.plugin", "arena_adapters.testing", "arena_adapters.load_policy")
    found = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        foreign = {m for m in _arena_imports(path)
                   if not m.startswith(allowed) and not m.startswith("arena_adapters_vlaeval")}
        if foreign:
            found[path.name] = sorted(foreign)
    assert not found, f"test imports outside arena_adapters.plugin / arena_adapters.testing: {found}"


def test_no_first_party_plugin_is_imported() -> None:
    for path in (ROOT / "src").rglob("*.py"):
        for module in _arena_imports(path):
            assert not module.startswith(("arena_adapters_gr00t", "arena_adapters_openpi", "arena_adapters_openvla")), \
                f"{path.name} imports {module}"
