"""Every third-party module the code imports comes from a distribution pyproject.toml declares.

A package that only arrives through prefect or mlflow disappears the day they drop it; a
declared one stays, with bounds uv.lock's versions satisfy.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from arrivals.topology import PRELOAD

PROJECT = Path(__file__).resolve().parents[3]
PRODUCT = ("arrivals", "automations", "consumer", "producer", "serving", "shared")
DEVELOPMENT = ("bench", "soak", "tests")
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dev: bool) -> list[Requirement]:
    """The project's requirements: main and extras (the scale extra's psycopg); dev on ask."""
    project = PYPROJECT["project"]
    extras = [line for lines in project["optional-dependencies"].values() for line in lines]
    lines = [*project["dependencies"], *extras]
    if dev:
        lines += PYPROJECT["dependency-groups"]["dev"]
    return [Requirement(line) for line in lines]


def _imported_roots(folders: Iterable[str]) -> dict[str, set[str]]:
    """Top-level module -> files importing it, for absolute imports (lazy ones included)."""
    roots: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((PROJECT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    roots.setdefault(name.partition(".")[0], set()).add(
                        str(path.relative_to(PROJECT))
                    )
    return roots


def _third_party(roots: dict[str, set[str]]) -> dict[str, set[str]]:
    ours = {*PRODUCT, *DEVELOPMENT}
    return {
        root: files
        for root, files in roots.items()
        if root not in sys.stdlib_module_names and root not in ours and root != "__future__"
    }


def _undeclared(roots: dict[str, set[str]], dev: bool) -> dict[str, str]:
    declared = {_normal(requirement.name) for requirement in _requirements(dev)}
    providers = packages_distributions()
    missing = {}
    for root, files in sorted(_third_party(roots).items()):
        distributions = {_normal(name) for name in providers.get(root, [])}
        if not distributions & declared:
            missing[root] = f"{sorted(distributions) or 'not installed'} <- {sorted(files)[0]}"
    return missing


def test_the_walk_sees_direct_and_lazy_imports() -> None:
    """Guards the walker itself: an empty walk would pass the tests below vacuously."""
    roots = _third_party(_imported_roots(PRODUCT))
    assert {"prefect", "mlflow", "sklearn", "pandas", "yaml", "watchdog"} <= set(roots)
    assert "consumer/publish.py" in roots["joblib"]  # imported inside a function
    assert "consumer" not in roots and "os" not in roots


def test_the_products_imports_are_declared_dependencies() -> None:
    roots = _imported_roots(PRODUCT)
    for module in PRELOAD:  # imported by name in the warm engine
        roots.setdefault(module.partition(".")[0], set()).add("arrivals/topology.py PRELOAD")
    assert _undeclared(roots, dev=False) == {}


def test_bench_and_tests_imports_are_declared_with_the_dev_group() -> None:
    assert _undeclared(_imported_roots(DEVELOPMENT), dev=True) == {}


def test_declared_bounds_admit_the_locked_versions() -> None:
    """`uv lock` keeps this true; a hand-edited bound the lock contradicts fails here."""
    lock = tomllib.loads((PROJECT / "uv.lock").read_text(encoding="utf-8"))
    locked: dict[str, list[str]] = {}
    for package in lock["package"]:
        locked.setdefault(_normal(package["name"]), []).append(package["version"])
    for requirement in _requirements(dev=True):
        versions = locked.get(_normal(requirement.name))
        assert versions, f"{requirement.name} is declared but not in uv.lock"
        for version in versions:
            assert requirement.specifier.contains(version), (str(requirement), version)
