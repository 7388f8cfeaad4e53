"""Fixtures for the core tests."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

InstallPlugin = Callable[..., str]


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallPlugin]:
    """Install real plugin distributions into a fresh site directory on ``sys.path``.

    Each call writes a module and a ``.dist-info`` folder (METADATA, entry_points.txt, RECORD), the
    layout pip produces, so ``importlib.metadata`` discovers it like any installed distribution.
    Returns the module name (unique per test, so imports never leak between tests).
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []
    prefix = f"aa_test_{tmp_path.name.replace('-', '_')}_"

    def install(distribution: str, source: str, entry_points: dict[str, str] | None = None) -> str:
        module = prefix + distribution.replace("-", "_")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist_info = site / f"{distribution.replace('-', '_')}-1.2.3.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.2.3\n")
        lines = [f"{name} = {value.replace('{module}', module)}" for name, value in (entry_points or {}).items()]
        (dist_info / "entry_points.txt").write_text("[arena_adapters]\n" + "\n".join(lines) + "\n")
        (dist_info / "RECORD").write_text(f"{module}.py,,\n")
        created.append(module)
        importlib.invalidate_caches()
        return module

    yield install
    for module in created:
        sys.modules.pop(module, None)
