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


# ---------------------------------------------------------------- the import graph

def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """taskq's modules and the taskq modules each imports, type-only imports
    (under ``if TYPE_CHECKING:``) included; ``from pkg import name`` counts as
    an import of ``pkg.name`` where that is a module."""
    paths = [*(ROOT / "taskq").rglob("*.py"), *(ROOT / "taskq_cli").rglob("*.py")]
    modules = {module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join([*base, mod]) if mod else ".".join(base)
                deps.add(mod)
                deps |= {f"{mod}.{a.name}" for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_cycle_among_taskq_modules():
    graph = import_graph()
    # a package's __init__ re-exports its modules: it is not part of a cycle
    graph = {m: {d for d in deps if graph.get(d) is None or m not in graph[d] or not d.count(".") < m.count(".")}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if d.endswith("__init__") or d in ("taskq", "taskq_cli", "taskq.storage", "taskq.worker"):
                continue  # packages: their __init__ only re-exports
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


# Each module's layer; a module imports only from its own layer or lower ones.
LAYERS = [
    ("taskq.errors", "taskq.logs", "taskq.codec", "taskq.signing", "taskq.states"),
    ("taskq.options", "taskq.task_options", "taskq.validation", "taskq.cron"),
    ("taskq.storage",),
    ("taskq.appview", "taskq.slots", "taskq.context", "taskq.embedded", "taskq.ephemeral", "taskq.ephemeral_cluster", "taskq.job", "taskq.enqueue", "taskq.stats", "taskq.status_text", "taskq.metrics",
     "taskq.control", "taskq.events", "taskq.task", "taskq.listing", "taskq.info", "taskq.tracing",
     "taskq.bulk", "taskq.registry", "taskq.workflow", "taskq.canvas", "taskq.flowplan", "taskq.flowsend",
     "taskq.waits"),
    ("taskq.app",),
    ("taskq.worker", "taskq.web", "taskq.contrib"),
    ("taskq_cli",),
]


def layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} has no layer in LAYERS")


def test_imports_point_down_the_layers():
    for module, deps in import_graph().items():
        if module in ("taskq", "taskq.storage", "taskq.worker", "taskq_cli"):
            continue  # packages re-export
        for d in deps:
            if d in ("taskq", "taskq.storage", "taskq.worker"):
                d = module  # `from . import codec` style: judged by the module named
            assert layer_of(d) <= layer_of(module), f"{module} (layer {layer_of(module)}) imports {d} (layer {layer_of(d)})"
