"""What an install brings: extras that let ``serve``/``demo`` run for every first-party adapter, a
LICENSE in every distribution, and a test suite that skips (with its reason) what a fresh clone lacks."""

from __future__ import annotations

import ast
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from arena_adapters.plugins import FIRST_PARTY_DISTRIBUTIONS
from arena_adapters.testing.golden import GOLDEN_DIR_ENV, golden_dir_or_skip

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_RUNNING = {"testing", "dev"}
"""Plugin extras for developing the plugin; every other extra is needed to run its server or client."""


def _pyproject(folder: Path) -> dict:
    with open(folder / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


def _core_extra(extra: str) -> list[str]:
    return _pyproject(ROOT)["project"]["optional-dependencies"][extra]


@pytest.mark.parametrize("adapter", sorted(FIRST_PARTY_DISTRIBUTIONS))
def test_the_core_extra_of_an_adapter_pulls_everything_its_server_needs(adapter: str) -> None:
    plugin = _pyproject(ROOT / "plugins" / adapter)["project"]
    assert plugin["name"] == FIRST_PARTY_DISTRIBUTIONS[adapter]
    running_extras = sorted(set(plugin.get("optional-dependencies", {})) - NOT_FOR_RUNNING)
    pin = f"=={plugin['version']}"
    wanted = f"{plugin['name']}[{','.join(running_extras)}]{pin}" if running_extras else f"{plugin['name']}{pin}"
    assert _core_extra(adapter) == [wanted]
    assert f"arena-adapters[{adapter}" in _core_extra("all")[0] or adapter in _core_extra("all")[0]


def test_the_all_extra_covers_every_adapter_the_report_inspect_and_ray() -> None:
    (requirement,) = _core_extra("all")
    chosen = set(requirement.removeprefix("arena-adapters[").removesuffix("]").split(","))
    assert chosen == {*FIRST_PARTY_DISTRIBUTIONS, "report", "inspect", "ray"}
    assert _core_extra("inspect") == ["inspect-robots>=0.60,<0.61"]


def test_the_installed_core_metadata_carries_the_server_extra() -> None:
    requires = metadata.requires("arena-adapters") or []
    assert 'arena-adapters-openvla[server]==0.1.0; extra == "openvla"' in requires
    openvla_server = [r for r in metadata.requires("arena-adapters-openvla") or [] if 'extra == "server"' in r]
    assert {r.split(">")[0] for r in openvla_server} == {"fastapi", "uvicorn", "httptools", "uvloop"}


@pytest.mark.parametrize("distribution", ["arena-adapters", *sorted(FIRST_PARTY_DISTRIBUTIONS.values())])
def test_every_distribution_carries_the_apache_license(distribution: str) -> None:
    folder = ROOT if distribution == "arena-adapters" else ROOT / "plugins" / distribution.removeprefix("arena-adapters-")
    assert (folder / "LICENSE").read_text().split()[:3] == ["Apache", "License", "Version"]
    project = _pyproject(folder)["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    site_packages = sysconfig.get_paths()["purelib"]  # not a stale *.egg-info of a build in the work tree
    installed = next(iter(metadata.distributions(name=distribution, path=[site_packages])), None)
    if installed is None:
        pytest.skip(f"{distribution} is not installed")
    assert installed.metadata["License-File"] == "LICENSE"
    # what the wheel built by the same backend carries (pip wheel --no-deps, unzip -l: dist-info/licenses/LICENSE)
    assert (installed.read_text("licenses/LICENSE") or "") == (folder / "LICENSE").read_text()


def test_golden_tests_skip_with_a_reason_without_the_golden_vectors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(GOLDEN_DIR_ENV, str(tmp_path / "no-golden"))
    with pytest.raises(pytest.skip.Exception, match=f"golden vectors not found: {tmp_path / 'no-golden'} has no cases.json"):
        golden_dir_or_skip()
    monkeypatch.delenv(GOLDEN_DIR_ENV)
    with pytest.raises(pytest.skip.Exception, match="shared/golden beside the repository has no cases.json"):
        golden_dir_or_skip(tmp_path / "elsewhere" / "conftest.py")
    present = tmp_path / "shared" / "golden"
    present.mkdir(parents=True)
    (present / "cases.json").write_text("[]")
    monkeypatch.setenv(GOLDEN_DIR_ENV, str(present))
    assert golden_dir_or_skip() == present
    monkeypatch.delenv(GOLDEN_DIR_ENV)
    assert golden_dir_or_skip(tmp_path / "repository" / "conftest.py") == present  # found beside a parent


@pytest.mark.parametrize("conftest", sorted(ROOT.glob("plugins/*/tests/conftest.py")), ids=lambda p: p.parts[-3])
def test_plugin_golden_fixtures_go_through_the_skipping_fixture(conftest: Path) -> None:
    tree = ast.parse(conftest.read_text())
    readers = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
               and any(isinstance(call, ast.Call) and getattr(call.func, "id", "") == "load_cases" for call in ast.walk(node))]
    assert readers, f"{conftest} reads no golden cases"
    for reader in readers:
        assert [arg.arg for arg in reader.args.args] == ["golden_dir"], f"{reader.name} must take the golden_dir fixture"
