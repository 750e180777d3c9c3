"""Imports point one way; only taskq/storage talks to redis."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = path.relative_to(ROOT).with_suffix("").parts[:-node.level]
                mod = ".".join([*parts, mod]) if mod else ".".join(parts)
            out.add(mod)
    return out


def test_only_storage_imports_redis():
    for path in (ROOT / "taskq").rglob("*.py"):
        if "storage" in path.parts:
            continue
        assert not any(m == "redis" or m.startswith("redis.") for m in imports_of(path)), path


def test_storage_never_imports_app_or_worker_and_library_never_imports_cli():
    for path in (ROOT / "taskq").rglob("*.py"):
        mods = imports_of(path)
        assert not any(m.startswith("taskq_cli") for m in mods), path
        if "storage" in path.parts:
            assert not any(m.startswith(("taskq.app", "taskq.worker", "taskq.task")) for m in mods), path


def test_no_pickle_anywhere():
    for path in [*(ROOT / "taskq").rglob("*.py"), *(ROOT / "taskq_cli").rglob("*.py")]:
        assert not {"pickle", "marshal", "dill", "cloudpickle"} & imports_of(path), path


def test_the_package_ships_its_type_hints():
    """A ``py.typed`` marker, packaged, so type checkers of user code read taskq's hints."""
    import tomllib

    assert (ROOT / "taskq" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["taskq"]
