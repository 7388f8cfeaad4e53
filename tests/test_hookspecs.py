"""Every hookspec is documented in pytest's style and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from arena_adapters import hookspecs

REPOSITORY = Path(__file__).resolve().parents[1]
HOOKS = [name for name, value in vars(hookspecs).items()
         if callable(value) and hasattr(value, "arena_adapters_spec")]


def test_the_hookspecs_are_found() -> None:
    assert "register_transports" in HOOKS and len(HOOKS) >= 6


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_says_what_it_registers_its_parameter_when_it_runs_and_shows_an_example(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc.splitlines()[0].startswith("Register"), f"{hook}: the first line says what it registers"
    assert ":param register:" in doc, f"{hook}: documents its parameter"
    assert "Called" in doc or "Used" in doc, f"{hook}: says when it is called"
    assert "Example::" in doc and "@hookimpl" in doc, f"{hook}: shows an implementation"


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_is_implemented_and_tested(hook: str) -> None:
    sources = [*REPOSITORY.glob("arena_adapters/**/*.py"), *REPOSITORY.glob("plugins/*/src/**/*.py")]
    implemented = [p for p in sources if f"def {hook}(" in p.read_text() and p.name != "hookspecs.py"]
    assert implemented, f"no plugin implements {hook}"
    tests = [*REPOSITORY.glob("tests/**/*.py"), *REPOSITORY.glob("plugins/*/tests/**/*.py")]
    assert any(hook in p.read_text() for p in tests if p.name != Path(__file__).name), f"no test names {hook}"
